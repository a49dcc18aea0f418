// Package roomnetd assembles a whole roomnet server from its parts: store,
// embedded or external Headscale, the embedded DERP relay, the control
// plane service and its REST API, metrics and the reconciler. cmd/roomnetd
// and the test harness both start servers through it; it holds no rules.
package roomnetd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/roomnet/roomnet/chat/chatserver"
	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/controlplane/api"
	"github.com/roomnet/roomnet/controlplane/events"
	"github.com/roomnet/roomnet/controlplane/figures"
	"github.com/roomnet/roomnet/controlplane/headscale"
	"github.com/roomnet/roomnet/controlplane/headscale/embedded"
	"github.com/roomnet/roomnet/controlplane/relays"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/derp"
	"github.com/roomnet/roomnet/derp/relay"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/web"
	"tailscale.com/tailcfg"
)

// Options are the process-level things a server needs besides its Config.
type Options struct {
	Logger *slog.Logger
	// Out receives the one-time start-up notice (where it listens, the
	// generated admin password). Nil: os.Stdout.
	Out io.Writer
	// APIRequestsPerSec overrides the per-address API rate (tests).
	APIRequestsPerSec float64
	// ReconcileGrace overrides the service's reconciliation grace (tests).
	ReconcileGrace time.Duration
}

// Server is a running roomnetd.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	Registry *prometheus.Registry
	Events   *events.Hub
	Service  *service.Service
	Chat     *chatserver.Server

	Figures *figures.Sampler

	store    *store.Store
	chatDB   *chatserver.GormStore
	relay    *relay.Server
	hs       *embedded.Supervisor
	hsClient *headscale.Client
	relays   *relays.Registry
	httpSrv  *http.Server
	ln       net.Listener
	url      string

	cancel   context.CancelFunc
	stop     chan struct{} // closed at shutdown: ends the admin event streams
	stopOnce sync.Once
	joins    atomic.Int64 // member_joined events, for the dashboard
	wg       sync.WaitGroup
}

// Start brings every part up in order and returns once the server is ready.
func Start(ctx context.Context, cfg config.Config, o Options) (_ *Server, err error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	log := o.Logger
	s := &Server{cfg: cfg, log: log, Registry: prometheus.NewRegistry(), Events: events.New(), stop: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeParts()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}

	if s.store, err = store.Open(cfg.Database.Driver, cfg.Database.DSN); err != nil {
		return nil, err
	}

	// The API listener comes first so that an ephemeral port is known
	// before anything announces URLs.
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listening for the API: %w", err)
	}
	s.url = cfg.PublicURL
	if s.url == "" {
		s.url = "http://" + s.ln.Addr().String()
	}

	shard, err := s.startHeadscale(ctx)
	if err != nil {
		return nil, err
	}

	s.Service, err = service.New(s.store, service.Options{
		Shards:          []service.Shard{shard},
		JoinKeyTTL:      cfg.Rooms.JoinKeyTTL,
		MaxPlayers:      cfg.Rooms.MaxPlayers,
		MaxRoomsPerUser: cfg.Rooms.MaxRoomsPerUser,
		TokenTTL:        cfg.Auth.TokenTTL,
		OpenSignup:      cfg.Auth.OpenSignup,
		ReconcileGrace:  o.ReconcileGrace,
		Logger:          log.With("component", "controlplane"),
	})
	if err != nil {
		return nil, err
	}
	// Isolation before the first join, then a first reconciliation.
	if rep, err := s.Service.Reconcile(ctx); err != nil {
		return nil, fmt.Errorf("reconciling at start: %w", err)
	} else if rep.Users+rep.Nodes+rep.Keys > 0 || rep.PolicySet {
		log.Info("reconciled at start", "users", rep.Users, "nodes", rep.Nodes, "keys", rep.Keys, "policy_set", rep.PolicySet)
	}
	generated, created, err := s.Service.BootstrapAdmin(ctx, cfg.Auth.AdminUsername, cfg.Auth.AdminPassword)
	if err != nil {
		return nil, err
	}

	s.registerMetrics()
	chatDSN := cfg.Database.DSN
	if cfg.Database.Driver == "sqlite" {
		chatDSN = filepath.Join(cfg.DataDir, "chat.db")
	}
	if s.chatDB, err = chatserver.OpenStore(cfg.Database.Driver, chatDSN); err != nil {
		return nil, err
	}
	s.Chat, err = chatserver.New(chatserver.Options{
		Store:        s.chatDB,
		Directory:    directory{svc: s.Service, store: s.store},
		Logger:       log,
		Registry:     s.Registry,
		MaxBody:      cfg.Chat.MaxBody,
		SendPerSec:   cfg.Chat.SendPerSec,
		SendBurst:    int(2 * cfg.Chat.SendPerSec),
		FramesPerSec: cfg.Chat.FramesPerSec,
		FramesBurst:  int(2 * cfg.Chat.FramesPerSec),
		SyncMessages: cfg.Chat.SyncMessages,
		StormEnter:   cfg.Chat.StormEnter, StormExit: cfg.Chat.StormExit,
		StormWindow: cfg.Chat.StormWindow, NotifyInterval: cfg.Chat.NotifyInterval,
	})
	if err != nil {
		return nil, err
	}
	if s.relay != nil {
		s.relays.SetLocalStats(s.relay.Stats)
	}
	s.Figures = figures.New(s.counts, cfg.Web.FiguresInterval, 360)
	var origins []string
	if u, err := url.Parse(s.url); err == nil && u.Host != "" {
		origins = append(origins, u.Scheme+"://"+u.Host)
	}
	e := api.New(api.Options{
		Service:        s.Service,
		Publisher:      publisher{hub: s.Events, chat: s.Chat, joins: &s.joins},
		Logger:         log.With("component", "api"),
		Registry:       s.Registry,
		Ready:          s.Ready,
		AuthPerMinute:  cfg.Auth.LoginPerMinute,
		RequestsPerSec: o.APIRequestsPerSec,
		Relays:         s.relays,
		RelayToken:     cfg.DERP.RelayToken,
		Moderator:      moderator{s.Chat},
		Events:         s.Events,
		Overview:       s.Figures.Overview,
		Origins:        origins,
		SecureCookies:  strings.HasPrefix(s.url, "https://"),
		Stop:           s.stop,
	})
	e.GET("/ws", echo.WrapHandler(api.CookieWebSocket(s.Chat, origins)))
	web.Register(e, s.viewer)
	s.httpSrv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.Figures.Run(runCtx)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.Service.RunReconciler(runCtx, cfg.Rooms.ReconcileInterval)
	}()

	log.Info("roomnetd ready", "api", s.url, "login_server", shard.LoginServer, "data_dir", cfg.DataDir)
	fmt.Fprintf(o.Out, "roomnetd is ready at %s\n", s.url)
	if created {
		if generated != "" {
			fmt.Fprintf(o.Out, "admin account %q created with password: %s\n(shown once; set ROOMNET_ADMIN_PASSWORD to choose it)\n", cfg.Auth.AdminUsername, generated)
		} else {
			fmt.Fprintf(o.Out, "admin account %q created with the configured password\n", cfg.Auth.AdminUsername)
		}
	}
	return s, nil
}

// startHeadscale starts the embedded relay and Headscale, or connects to an
// external Headscale, and returns the shard rooms go to.
func (s *Server) startHeadscale(ctx context.Context) (service.Shard, error) {
	cfg := s.cfg
	if cfg.Headscale.Mode == "external" {
		c, err := headscale.DialRemote(cfg.Headscale.Address, cfg.Headscale.APIKey, cfg.Headscale.Insecure)
		if err != nil {
			return service.Shard{}, err
		}
		s.hsClient = c
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Health(hctx); err != nil {
			return service.Shard{}, fmt.Errorf("external headscale: %w", err)
		}
		return service.Shard{Name: "default", Client: c, LoginServer: cfg.Headscale.ServerURL}, nil
	}

	hsListen, err := resolvePort(cfg.Headscale.Listen)
	if err != nil {
		return service.Shard{}, err
	}
	serverURL := cfg.Headscale.ServerURL
	if serverURL == "" {
		serverURL = "http://" + hsListen
	}
	hsDir := filepath.Join(cfg.DataDir, "headscale")
	mapPath := filepath.Join(cfg.DataDir, "derpmap.yaml")
	var static []roomnet.Relay
	if cfg.DERP.Enabled {
		s.relay, err = relay.Start(relay.Options{
			Listen:     cfg.DERP.Listen,
			STUNListen: cfg.DERP.STUNListen,
			Hostname:   cfg.DERP.Hostname,
			CertFile:   cfg.DERP.CertFile,
			KeyFile:    cfg.DERP.KeyFile,
			StateDir:   filepath.Join(cfg.DataDir, "derp"),
			VerifyURL:  "http://" + hsListen + "/verify",
			MeshKey:    cfg.DERP.MeshKey,
			Logger:     s.log,
		})
		if err != nil {
			return service.Shard{}, err
		}
		n := s.relay.Node(cfg.DERP.RegionID, fmt.Sprintf("%da", cfg.DERP.RegionID))
		static = append(static, roomnet.Relay{Embedded: true, LastSeen: time.Now(), RelayHeartbeat: roomnet.RelayHeartbeat{
			RegionID: cfg.DERP.RegionID, RegionCode: cfg.DERP.RegionCode, RegionName: cfg.DERP.RegionName,
			Node: roomnet.RelayNode{Name: n.Name, HostName: n.HostName, IPv4: n.IPv4, IPv6: n.IPv6, DERPPort: n.DERPPort, STUNPort: n.STUNPort, Insecure: n.InsecureForTests},
		}})
	} else if _, err := os.Stat(mapPath); err != nil {
		return service.Shard{}, fmt.Errorf("derp.enabled is off and no DERP map at %s: %w", mapPath, err)
	}
	s.relays, err = relays.New(static, cfg.DERP.RelayTTL, func(m *tailcfg.DERPMap) error { return derp.WriteMapFile(mapPath, m) })
	if err != nil {
		return service.Shard{}, err
	}
	s.hs, err = embedded.Start(ctx, embedded.Options{
		Dir:               hsDir,
		Listen:            hsListen,
		ServerURL:         serverURL,
		DERPMapPath:       mapPath,
		DERPMapRefresh:    cfg.DERP.MapRefresh,
		EphemeralTimeout:  cfg.Headscale.EphemeralGC,
		BatchDelay:        cfg.Headscale.BatchDelay,
		StoreBatchTimeout: cfg.Headscale.StoreBatch,
		Debug:             cfg.LogLevel == "debug",
		Logger:            s.log,
	})
	if err != nil {
		return service.Shard{}, err
	}
	return service.Shard{Name: "default", Client: s.hs.Client(), LoginServer: serverURL}, nil
}

// resolvePort turns a ":0" port into a free one; Headscale runs in another
// process and must be told a concrete address.
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// URL is the API's base URL.
func (s *Server) URL() string { return s.url }

// Headscale returns the embedded Headscale's supervisor (nil when external).
func (s *Server) Headscale() *embedded.Supervisor { return s.hs }

// Relay returns the embedded DERP relay (nil when disabled).
func (s *Server) Relay() *relay.Server { return s.relay }

// Ready reports nil when the database, Headscale and the relay serve.
func (s *Server) Ready(ctx context.Context) error {
	if s.hs != nil && !s.hs.Ready() {
		return errors.New("headscale is not ready")
	}
	if err := s.Service.Health(ctx); err != nil {
		return err
	}
	if s.cfg.DERP.Enabled && s.relay == nil {
		return errors.New("derp relay is not running")
	}
	return nil
}

func (s *Server) registerMetrics() {
	r := s.Registry
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st := s.store
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomnet_rooms_open", Help: "Open rooms."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		counts, err := st.CountOpenRooms(ctx)
		if err != nil {
			return -1
		}
		n := 0
		for _, c := range counts {
			n += c
		}
		return float64(n)
	}))
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomnet_members_active", Help: "Active members of open rooms."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := st.CountActiveMembers(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomnet_events_dropped_total", Help: "Membership events lost to slow in-process subscribers."}, func() float64 {
		return float64(s.Events.Dropped())
	}))
	if s.relay != nil {
		r.MustRegister(s.relay.Collector())
	}
	if s.hs != nil {
		hs := s.hs
		r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomnet_headscale_ready", Help: "1 when the embedded Headscale answers its health check."}, func() float64 {
			if hs.Ready() {
				return 1
			}
			return 0
		}))
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomnet_headscale_restarts_total", Help: "Restarts of the embedded Headscale after crashes."}, func() float64 {
			return float64(hs.Restarts())
		}))
	}
}

// Shutdown stops accepting requests, waits for running ones (bounded by
// ctx), then stops the reconciler, Headscale, the relay and the store.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	s.stopOnce.Do(func() { close(s.stop) })
	if s.Chat != nil {
		// Hijacked WebSockets are not closed by http.Server.Shutdown.
		if err := s.Chat.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping chat: %w", err))
		}
	}
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping API: %w", err))
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.Service != nil {
		s.Service.Close()
	}
	errs = append(errs, s.closeParts())
	return errors.Join(errs...)
}

func (s *Server) closeParts() error {
	var errs []error
	if s.ln != nil && s.httpSrv == nil {
		s.ln.Close()
	}
	if s.hs != nil {
		errs = append(errs, s.hs.Close())
	}
	if s.hsClient != nil {
		errs = append(errs, s.hsClient.Close())
	}
	if s.relays != nil {
		s.relays.Close()
	}
	if s.relay != nil {
		errs = append(errs, s.relay.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.chatDB != nil {
		errs = append(errs, s.chatDB.Close())
	}
	return errors.Join(errs...)
}

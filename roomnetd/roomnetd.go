// Package roomnetd assembles a whole roomnet server from its parts: store,
// embedded or external Headscale, the embedded DERP relay, the control
// plane service and its REST API, metrics and the reconciler. cmd/roomnetd
// and the test harness both start servers through it; it holds no rules.
package roomnetd

import (
	"cmp"
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
	"github.com/roomnet/roomnet/derp/relay"
	"github.com/roomnet/roomnet/web"
)

// Options are the process-level things a server needs besides its Config.
type Options struct {
	Logger *slog.Logger
	// Out receives the one-time start-up notice (where it listens, the
	// generated admin password). Nil: os.Stdout.
	Out io.Writer
	// APIRequestsPerSec overrides the per-address API rate (tests).
	APIRequestsPerSec float64
	// VerifyPerSec overrides POST /verify's rate per address (tests).
	VerifyPerSec float64
	// ReconcileGrace overrides the service's reconciliation grace (tests).
	ReconcileGrace time.Duration
	// TokenTTL overrides auth.token_ttl, which is at least a minute (tests
	// of expiry).
	TokenTTL time.Duration
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

	store   *store.Store
	chatDB  *chatserver.GormStore
	redis   *redisParts // nil: redis.url is empty (redis.go)
	evRelay *eventRelay // the hub's events to and from the other nodes; nil without Redis
	// shardNotes: what the deciding node says of lost shards; nil without Redis
	shardNotes *shardNotes
	// relayNotes: relay heartbeats passed between nodes; nil without Redis
	relayNotes *relayNotes
	relay      *relay.Server
	hs         *embedded.Supervisor // shard 0, when embedded
	hsClient   *headscale.Client    // the external Headscale of headscale.mode external
	// hsMore are the embedded shards after the first, extClients the
	// connections to headscale.external_shards (shards.go).
	hsMore     []*embedded.Supervisor
	extClients []*headscale.Client
	relays     *relays.Registry
	httpSrv    *http.Server
	ln         net.Listener
	url        string
	metrics    *http.Server // nil: metrics.listen is off
	metricsL   net.Listener
	leaseDB    io.Closer // #16 (limits.go): the reconciler lease's pool; nil on SQLite

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
	if err := secureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	chatDSN := cfg.Database.DSN
	if cfg.Database.Driver == "sqlite" {
		chatDSN = filepath.Join(cfg.DataDir, "chat.db")
		for _, dsn := range []string{cfg.Database.DSN, chatDSN} {
			if err := createPrivate(dsn); err != nil {
				return nil, err
			}
		}
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
	if cfg.Metrics.Listen != "" {
		if s.metricsL, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("listening for metrics: %w", err)
		}
	}

	shards, err := s.startShards(ctx)
	if err != nil {
		return nil, err
	}

	// #16 (limits.go): one node of a deployment reconciles at a time.
	reconcilerLease, leaseDB, err := reconcilerLease(cfg.Database.Driver, cfg.Database.DSN, s.Registry, log)
	if err != nil {
		return nil, err
	}
	s.leaseDB = leaseDB
	s.Service, err = service.New(s.store, service.Options{
		Shards:          shards,
		ShardNodeCap:    cfg.Headscale.ShardNodeCap,
		ShardGrace:      cfg.Headscale.ShardGrace,
		JoinKeyTTL:      cfg.Rooms.JoinKeyTTL,
		MaxPlayers:      cfg.Rooms.MaxPlayers,
		MaxRoomsPerUser: cfg.Rooms.MaxRoomsPerUser,
		NoPeerRelays:    !cfg.Rooms.PeerRelays,
		TokenTTL:        cmp.Or(o.TokenTTL, cfg.Auth.TokenTTL),
		OpenSignup:      cfg.Auth.OpenSignup,
		ReconcileGrace:  o.ReconcileGrace,
		Lease:           reconcilerLease, // #16
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
	s.Service.RefreshShards(ctx) // placement by load from the first room on
	generated, created, err := s.Service.BootstrapAdmin(ctx, cfg.Auth.AdminUsername, cfg.Auth.AdminPassword)
	if err != nil {
		return nil, err
	}

	s.registerMetrics()
	if s.chatDB, err = chatserver.OpenStore(cfg.Database.Driver, chatDSN); err != nil {
		return nil, err
	}
	if s.redis, err = s.startRedis(s.chatDB); err != nil {
		return nil, err
	}
	// One Limiter for the API's limits and chat's accept rate: shared
	// through Redis with --redis-url (limits.go).
	limiter := sharedLimiter(s.redis.shared(), s.Registry, log)
	chatOpts := chatserver.Options{
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
		// Connection caps count per client address the way the API's
		// limits do: forwarding headers only from trusted proxies.
		ClientIP:      api.ClientIP(cfg.TrustedProxies),
		AcceptLimiter: limiter,
	}
	s.redis.chatOptions(&chatOpts)
	if s.Chat, err = chatserver.New(chatOpts); err != nil {
		return nil, err
	}
	if s.relay != nil {
		s.relays.SetLocalStats(s.relay.Stats)
		// Members on clients that send no path report (the official
		// Tailscale client) get paths inferred from what this relay carries.
		s.Service.SetRelayObserver(cfg.DERP.RegionCode, s.relay)
	}
	s.Figures = figures.New(s.counts, cfg.Web.FiguresInterval, 360)
	var origins []string
	if u, err := url.Parse(s.url); err == nil && u.Host != "" {
		origins = append(origins, u.Scheme+"://"+u.Host)
	}
	// The service publishes its events itself, under each room's lock, so
	// that they arrive in order.
	if s.evRelay = startEventRelay(s.redis.shared(), s.Events, log.With("component", "events")); s.evRelay != nil {
		s.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomnet_events_relay_dropped_total", Help: "Events not published to the other nodes' live views (Redis down or too slow)."}, func() float64 {
			return float64(s.evRelay.dropped.Load())
		}))
	}
	s.Service.SetPublisher(publisher{hub: s.Events, chat: s.Chat, joins: &s.joins, remote: s.evRelay})
	// #17: the node holding the reconciler lease decides about lost
	// shards and tells the others (shardnotes_redis.go).
	s.shardNotes = startShardNotes(s.redis.shared(), s.Service, log.With("component", "shards"))
	s.relayNotes = startRelayNotes(s.redis.shared(), s.relays, log.With("component", "relays"))
	s.Service.SetModerator(moderator{s.Chat, s.chatDB})
	e := api.New(api.Options{
		Service:            s.Service,
		Logger:             log.With("component", "api"),
		Registry:           s.Registry,
		Ready:              s.Ready,
		Degraded:           s.redis.degraded,
		AuthPerMinute:      cfg.Auth.LoginPerMinute,
		LoginFailures:      cfg.Auth.LoginFailures,
		LoginFailureWindow: cfg.Auth.LoginFailureWindow,
		ClientIP:           api.ClientIP(cfg.TrustedProxies),
		RequestsPerSec:     o.APIRequestsPerSec,
		VerifyPerSec:       o.VerifyPerSec,
		Relays:             s.relays,
		RelayToken:         cfg.DERP.RelayToken,
		Moderator:          moderator{s.Chat, s.chatDB},
		Events:             s.Events,
		Overview:           s.Figures.Overview,
		Origins:            origins,
		SecureCookies:      strings.HasPrefix(s.url, "https://"),
		Stop:               s.stop,
		Limiter:            limiter,
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
	if s.metricsL != nil {
		s.metrics = &http.Server{
			Handler:           api.MetricsHandler(s.Registry),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.metrics.Serve(s.metricsL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		s.Figures.Run(runCtx)
	}()
	go func() {
		defer s.wg.Done()
		s.Service.RunShardMonitor(runCtx, 5*time.Second)
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

	log.Info("roomnetd ready", "api", s.url, "login_server", shards[0].LoginServer, "shards", len(shards), "data_dir", cfg.DataDir)
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

// URL is the API's base URL.
func (s *Server) URL() string { return s.url }

// MetricsURL is the URL of /metrics, or "" when metrics.listen is off.
func (s *Server) MetricsURL() string {
	if s.metricsL == nil {
		return ""
	}
	return "http://" + s.metricsL.Addr().String() + "/metrics"
}

// Headscale returns the embedded Headscale's supervisor (nil when external).
func (s *Server) Headscale() *embedded.Supervisor { return s.hs }

// Relay returns the embedded DERP relay (nil when disabled).
func (s *Server) Relay() *relay.Server { return s.relay }

// Ready reports nil when the database, Headscale and the relay serve.
func (s *Server) Ready(ctx context.Context) error {
	if err := s.shardsReady(); err != nil {
		return err
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
	r.MustRegister(shardCollector{s.Service})
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
	if s.metrics != nil {
		if err := s.metrics.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping metrics: %w", err))
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
	if s.metricsL != nil && s.metrics == nil {
		s.metricsL.Close()
	}
	if s.hs != nil {
		errs = append(errs, s.hs.Close())
	}
	if s.hsClient != nil {
		errs = append(errs, s.hsClient.Close())
	}
	errs = append(errs, s.closeShards())
	s.relayNotes.close() // no more remote heartbeats into the registry
	if s.relays != nil {
		s.relays.Close()
	}
	if s.relay != nil {
		errs = append(errs, s.relay.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.leaseDB != nil { // #16
		errs = append(errs, s.leaseDB.Close())
	}
	s.evRelay.close()
	s.shardNotes.close()
	errs = append(errs, s.redis.close())
	if s.chatDB != nil {
		errs = append(errs, s.chatDB.Close())
	}
	return errors.Join(errs...)
}

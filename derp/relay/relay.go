// Package relay runs one DERP relay node: tailscale.com's derpserver over
// TLS, STUN on UDP, a probe endpoint, and admission of known nodes only
// (verified against Headscale, failing closed). roomnetd embeds it; the
// standalone roomnet-derp runs the same code.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/netmon"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/roomnet/roomnet/internal/tslog"
)

// Options configures a relay.
type Options struct {
	Listen     string // DERP over TLS, host:port (port 0: ephemeral)
	STUNListen string // UDP host:port; empty: no STUN
	// STUNAltListen is a second STUN port on the same host (empty: none).
	// A client that asks both from one socket learns whether its NAT
	// maps each destination to another public port (a hard NAT): what
	// roomnet doctor tells a player. The DERP map lists it as a STUN-only
	// node of the region (AltNode).
	STUNAltListen string
	Hostname      string // what nodes dial; default: host of Listen
	CertFile      string // empty: a self-signed certificate (development only)
	KeyFile       string
	StateDir      string // private key and self-signed certificate
	// VerifyURL is Headscale's /verify endpoint. Clients whose node key
	// Headscale does not know are refused; when the URL is unreachable the
	// relay refuses too (fail closed).
	VerifyURL string
	MeshKey   string
	// MeshWith lists the other relays of the region
	// ("https://host:port/derp"); needs MeshKey.
	MeshWith []string
	// MeshInsecure accepts the mesh peers' self-signed certificates
	// (local development only).
	MeshInsecure bool
	// RateBytesPerSec limits what each client may send through the relay
	// (0: unlimited); RateBurstBytes is its bucket.
	RateBytesPerSec, RateBurstBytes uint64
	// MaxConns bounds concurrent client connections (0: unlimited).
	MaxConns int
	// AcceptPerSec bounds new connections per second (0: unlimited).
	AcceptPerSec float64
	Logger       *slog.Logger
}

// Server is a running relay node.
type Server struct {
	opts       Options
	derp       *derpserver.Server
	httpSrv    *http.Server
	ln         net.Listener
	stun       *stunserver.STUNServer
	stunAlt    *stunserver.STUNServer
	stunCancel context.CancelFunc
	selfSigned bool
	wg         sync.WaitGroup
	log        *slog.Logger
	meshCancel context.CancelFunc
	closeOnce  sync.Once
	closeErr   error
	flows      flowTable
}

// Start listens and serves until Close.
func Start(o Options) (*Server, error) {
	log := o.Logger.With("component", "derp")
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating derp state dir: %w", err)
	}
	priv, err := loadOrCreateKey(filepath.Join(o.StateDir, "derp_private.key"))
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("derp listen address: %w", err)
	}
	if o.Hostname == "" {
		o.Hostname = host
	}
	s := &Server{opts: o, log: log, flows: flowTable{now: time.Now}}
	var cert tls.Certificate
	if o.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading derp certificate: %w", err)
		}
	} else {
		cert, err = selfSigned(o.StateDir, o.Hostname)
		if err != nil {
			return nil, err
		}
		s.selfSigned = true
		log.Warn("derp relay uses a self-signed certificate; fine for local development, not for production", "hostname", o.Hostname)
	}

	d := derpserver.New(priv, tslog.Logf(log, slog.LevelDebug))
	if o.VerifyURL != "" {
		d.SetVerifyClientURL(o.VerifyURL)
		d.SetVerifyClientURLFailOpen(false)
	}
	if o.MeshKey != "" {
		if err := d.SetMeshKey(o.MeshKey); err != nil {
			return nil, fmt.Errorf("setting derp mesh key: %w", err)
		}
	}
	if len(o.MeshWith) > 0 && o.MeshKey == "" {
		return nil, errors.New("derp: meshing needs a mesh key")
	}
	if o.RateBytesPerSec > 0 {
		d.UpdateRateLimits(derpserver.RateConfig{PerClientRateLimitBytesPerSec: o.RateBytesPerSec, PerClientRateBurstBytes: o.RateBurstBytes})
	}
	s.derp = d

	mux := http.NewServeMux()
	mux.Handle("/derp", s.tapHandler(derpserver.Handler(d)))
	mux.HandleFunc("/derp/probe", derpserver.ProbeHandler)
	mux.HandleFunc("/derp/latency-check", derpserver.ProbeHandler)
	mux.HandleFunc("/generate_204", derpserver.ServeNoContent)
	tlsCfg := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		MinVersion:     tls.VersionTLS12,
	}
	d.ModifyTLSConfigToAddMetaCert(tlsCfg)
	s.httpSrv = &http.Server{
		Handler:           mux,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("listening for derp: %w", err)
	}
	s.ln = ln
	ln = limitListener(ln, o.MaxConns, o.AcceptPerSec)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("derp server stopped", "err", err)
		}
	}()

	if o.STUNListen != "" || o.STUNAltListen != "" {
		ctx, cancel := context.WithCancel(context.Background())
		s.stunCancel = cancel
		for _, l := range []struct {
			addr string
			srv  **stunserver.STUNServer
		}{{o.STUNListen, &s.stun}, {o.STUNAltListen, &s.stunAlt}} {
			if l.addr == "" {
				continue
			}
			srv := stunserver.New(ctx)
			if err := srv.Listen(l.addr); err != nil {
				s.Close()
				return nil, fmt.Errorf("listening for stun on %s: %w", l.addr, err)
			}
			*l.srv = srv
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_ = srv.Serve()
			}()
		}
	}
	meshCtx, meshCancel := context.WithCancel(context.Background())
	s.meshCancel = meshCancel
	for _, peer := range o.MeshWith {
		if err := s.meshWith(meshCtx, peer); err != nil {
			s.Close()
			return nil, err
		}
	}
	log.Info("derp relay listening", "addr", ln.Addr().String(), "stun", s.STUNPort(), "verify", o.VerifyURL != "")
	return s, nil
}

// meshWith forwards packets for clients of the peer relay: the peer tells
// this relay which clients it has, and packets for them go to it.
func (s *Server) meshWith(ctx context.Context, peerURL string) error {
	logf := tslog.Logf(s.log.With("mesh", peerURL), slog.LevelDebug)
	region, err := regionFor(peerURL, s.opts.MeshInsecure)
	if err != nil {
		return fmt.Errorf("meshing with %s: %w", peerURL, err)
	}
	c := derphttp.NewRegionClient(s.derp.PrivateKey(), logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	c.MeshKey = s.derp.MeshKey()
	c.WatchConnectionChanges = true
	add := func(m derp.PeerPresentMessage) { s.derp.AddPacketForwarder(m.Key, c) }
	remove := func(m derp.PeerGoneMessage) { s.derp.RemovePacketForwarder(m.Peer, c) }
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		c.RunWatchConnectionLoop(ctx, s.derp.PublicKey(), logf, add, remove, func(error) {})
	}()
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		c.Close() // unblocks the loop's read
	}()
	return nil
}

// regionFor describes one relay ("https://host:port/derp") as a
// one-node region, the form derphttp dials; insecure accepts a
// self-signed certificate (development only).
func regionFor(rawURL string, insecure bool) (*tailcfg.DERPRegion, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("want https://host:port/derp, got %q", rawURL)
	}
	port := 443
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("bad port in %q", rawURL)
		}
	}
	n := &tailcfg.DERPNode{Name: "peer", RegionID: 1, HostName: u.Hostname(), DERPPort: port, InsecureForTests: insecure}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		if a.Is4() {
			n.IPv4, n.IPv6 = a.String(), "none"
		} else {
			n.IPv4, n.IPv6 = "none", a.String()
		}
	}
	return &tailcfg.DERPRegion{RegionID: 1, RegionCode: "peer", Nodes: []*tailcfg.DERPNode{n}}, nil
}

// Client returns a DERP client of this relay for priv (tests and probes).
func (s *Server) Client(priv key.NodePrivate, logf func(string, ...any)) *derphttp.Client {
	region := &tailcfg.DERPRegion{RegionID: 1, RegionCode: "self", Nodes: []*tailcfg.DERPNode{s.Node(1, "self")}}
	return derphttp.NewRegionClient(priv, logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
}

// Addr is the TLS listener's address.
func (s *Server) Addr() netip.AddrPort {
	return netip.MustParseAddrPort(s.ln.Addr().String())
}

// STUNPort is the STUN UDP port, or -1 when STUN is off.
func (s *Server) STUNPort() int { return stunPort(s.stun) }

// STUNAltPort is the second STUN port, or -1 when there is none.
func (s *Server) STUNAltPort() int { return stunPort(s.stunAlt) }

func stunPort(srv *stunserver.STUNServer) int {
	if srv == nil {
		return -1
	}
	_, p, _ := net.SplitHostPort(srv.LocalAddr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// PublicKey is the relay's DERP key.
func (s *Server) PublicKey() key.NodePublic { return s.derp.PublicKey() }

// Node describes this relay for a DERP map.
func (s *Server) Node(regionID int, name string) *tailcfg.DERPNode {
	n := &tailcfg.DERPNode{
		Name:             name,
		RegionID:         regionID,
		HostName:         s.opts.Hostname,
		DERPPort:         int(s.Addr().Port()),
		STUNPort:         s.STUNPort(),
		InsecureForTests: s.selfSigned,
	}
	// A literal address pins the node to one family; "none" for the other
	// keeps netcheck from waiting out a probe that cannot succeed.
	if a, err := netip.ParseAddr(s.opts.Hostname); err == nil {
		if a.Is4() {
			n.IPv4, n.IPv6 = a.String(), "none"
		} else {
			n.IPv4, n.IPv6 = "none", a.String()
		}
	}
	return n
}

// AltNode describes the second STUN port as a STUN-only node of the
// region, or returns nil when there is none.
func (s *Server) AltNode(regionID int, name string) *tailcfg.DERPNode {
	if s.stunAlt == nil {
		return nil
	}
	n := s.Node(regionID, name)
	n.STUNPort, n.STUNOnly = s.STUNAltPort(), true
	return n
}

// Close stops serving and waits for the relay's goroutines. It is
// idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if s.httpSrv != nil {
		errs = append(errs, s.httpSrv.Shutdown(ctx))
	}
	if s.stunCancel != nil {
		s.stunCancel()
	}
	if s.meshCancel != nil {
		s.meshCancel()
	}
	errs = append(errs, s.derp.Close())
	s.wg.Wait()
	return errors.Join(errs...)
}

func loadOrCreateKey(path string) (key.NodePrivate, error) {
	var k key.NodePrivate
	if b, err := os.ReadFile(path); err == nil {
		if err := k.UnmarshalText(b); err != nil {
			return k, fmt.Errorf("parsing derp key %s: %w", path, err)
		}
		return k, nil
	} else if !os.IsNotExist(err) {
		return k, fmt.Errorf("reading derp key: %w", err)
	}
	k = key.NewNode()
	b, _ := k.MarshalText()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return k, fmt.Errorf("writing derp key: %w", err)
	}
	return k, nil
}

// Connected reports whether a client with key k is connected here.
func (s *Server) Connected(k key.NodePublic) bool { return s.derp.IsClientConnectedForTest(k) }

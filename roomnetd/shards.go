package roomnetd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/controlplane/headscale"
	"github.com/roomnet/roomnet/controlplane/headscale/embedded"
	"github.com/roomnet/roomnet/controlplane/relays"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/derp"
	"github.com/roomnet/roomnet/derp/relay"
	"github.com/roomnet/roomnet/roomnet"
)

// Headscale shards: headscale.shards supervised children (embedded mode)
// or the one external Headscale (external mode), then every
// headscale.external_shards entry. The first shard is the one a single
// Headscale always was: its name ("default"), data dir (headscale/) and
// listener (headscale.listen) do not change. Embedded shard i>0 is
// "hs-i" in headscale-i/, listening on the next free port after the
// previous shard's. Every embedded child reads the same DERP map file,
// and the service sets the same isolation policy on every shard.

// startShards starts the embedded relay and the embedded Headscale shards
// (or connects to the external Headscale), connects to the external
// shards, and returns the shards rooms go to.
func (s *Server) startShards(ctx context.Context) ([]service.Shard, error) {
	hc := s.cfg.Headscale
	var shards []service.Shard
	if hc.Mode == "external" {
		sh, c, err := dialShard(ctx, config.ExternalShard{
			Name: config.EmbeddedShardName(0), Address: hc.Address, APIKey: hc.APIKey, ServerURL: hc.ServerURL, Insecure: hc.Insecure,
		})
		if err != nil {
			return nil, err
		}
		s.hsClient = c
		shards = append(shards, sh)
		// No embedded relay: the map holds the relays that send
		// heartbeats to this node, written where a Headscale on this
		// machine could read it (an external one usually has its own).
		mapPath := filepath.Join(s.cfg.DataDir, "derpmap.yaml")
		if s.relays, err = relays.New(nil, s.cfg.DERP.RelayTTL, func(m *tailcfg.DERPMap) error { return derp.WriteMapFile(mapPath, m) }); err != nil {
			return nil, err
		}
	} else {
		if s.cfg.Redis.URL != "" {
			// Allowed (chat alone scales so, and tests do it), but rooms
			// do not: each node's embedded "default" is another server.
			s.log.Warn("redis.url with an embedded Headscale: every node runs its own shard \"default\", so a room created through one node cannot be joined through another; share Headscale with headscale.mode external and headscale.external_shards (docs/operations.md)")
		}
		emb, err := s.startEmbedded(ctx, hc.Shards+len(hc.ExternalShards))
		if err != nil {
			return nil, err
		}
		shards = append(shards, emb...)
	}
	for _, x := range hc.ExternalShards {
		sh, c, err := dialShard(ctx, x)
		if err != nil {
			return nil, err
		}
		s.extClients = append(s.extClients, c)
		shards = append(shards, sh)
	}
	return shards, nil
}

// dialShard connects to an external Headscale and checks that it answers.
func dialShard(ctx context.Context, x config.ExternalShard) (service.Shard, *headscale.Client, error) {
	c, err := headscale.DialRemote(x.Address, x.APIKey, x.Insecure)
	if err != nil {
		return service.Shard{}, nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Health(hctx); err != nil {
		c.Close()
		return service.Shard{}, nil, fmt.Errorf("external headscale %s: %w", x.Name, err)
	}
	return service.Shard{
		Name: x.Name, Client: c, LoginServer: x.ServerURL, Kind: service.ShardExternal,
		Admitter: verifier(x.ServerURL + "/verify"),
	}, c, nil
}

// verifier asks a shard's Headscale /verify; admission must be quick or
// refused.
func verifier(url string) headscale.Verifier {
	return headscale.Verifier{URL: url, Client: &http.Client{Timeout: 5 * time.Second}}
}

// startEmbedded starts the embedded relay (unless derp.enabled is off)
// and the embedded Headscale children; total is how many shards there
// are in all, which decides what the relay asks before it admits a node.
func (s *Server) startEmbedded(ctx context.Context, total int) ([]service.Shard, error) {
	cfg := s.cfg
	n := cfg.Headscale.Shards
	listens, err := shardListens(cfg.Headscale.Listen, cfg.Headscale.ShardListens, n)
	if err != nil {
		return nil, err
	}
	mapPath := filepath.Join(cfg.DataDir, "derpmap.yaml")
	var static []roomnet.Relay
	if cfg.DERP.Enabled {
		// One shard: the relay asks its Headscale, as it always did.
		// Several: it asks roomnetd's own /verify, which asks them all.
		verifyURL := "http://" + loopback(listens[0]) + "/verify"
		if total > 1 {
			verifyURL = "http://" + loopback(s.ln.Addr().String()) + "/verify"
		}
		s.relay, err = relay.Start(relay.Options{
			Listen:        cfg.DERP.Listen,
			STUNListen:    cfg.DERP.STUNListen,
			STUNAltListen: cfg.DERP.STUNAltListen,
			Hostname:      cfg.DERP.Hostname,
			CertFile:      cfg.DERP.CertFile,
			KeyFile:       cfg.DERP.KeyFile,
			StateDir:      filepath.Join(cfg.DataDir, "derp"),
			VerifyURL:     verifyURL,
			MeshKey:       cfg.DERP.MeshKey,
			Logger:        s.log,
		})
		if err != nil {
			return nil, err
		}
		node := s.relay.Node(cfg.DERP.RegionID, fmt.Sprintf("%da", cfg.DERP.RegionID))
		static = append(static, roomnet.Relay{Embedded: true, LastSeen: time.Now(), RelayHeartbeat: roomnet.RelayHeartbeat{
			RegionID: cfg.DERP.RegionID, RegionCode: cfg.DERP.RegionCode, RegionName: cfg.DERP.RegionName,
			Node: roomnet.RelayNode{Name: node.Name, HostName: node.HostName, IPv4: node.IPv4, IPv6: node.IPv6, DERPPort: node.DERPPort, STUNPort: node.STUNPort, Insecure: node.InsecureForTests},
		}})
		if alt := s.relay.AltNode(cfg.DERP.RegionID, fmt.Sprintf("%dstun", cfg.DERP.RegionID)); alt != nil {
			static = append(static, roomnet.Relay{Embedded: true, LastSeen: time.Now(), RelayHeartbeat: roomnet.RelayHeartbeat{
				RegionID: cfg.DERP.RegionID, RegionCode: cfg.DERP.RegionCode, RegionName: cfg.DERP.RegionName,
				Node: roomnet.RelayNode{Name: alt.Name, HostName: alt.HostName, IPv4: alt.IPv4, IPv6: alt.IPv6, DERPPort: alt.DERPPort, STUNPort: alt.STUNPort, Insecure: alt.InsecureForTests, STUNOnly: true},
			}})
		}
	} else if _, err := os.Stat(mapPath); err != nil {
		return nil, fmt.Errorf("derp.enabled is off and no DERP map at %s: %w", mapPath, err)
	}
	s.relays, err = relays.New(static, cfg.DERP.RelayTTL, func(m *tailcfg.DERPMap) error { return derp.WriteMapFile(mapPath, m) })
	if err != nil {
		return nil, err
	}

	sups := make([]*embedded.Supervisor, n)
	errs := make([]error, n)
	urls := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := filepath.Join(cfg.DataDir, "headscale")
		urls[i] = "http://" + listens[i]
		if i == 0 && cfg.Headscale.ServerURL != "" {
			urls[i] = cfg.Headscale.ServerURL
		}
		if i > 0 && len(cfg.Headscale.ShardServerURLs) > 0 {
			urls[i] = cfg.Headscale.ShardServerURLs[i-1]
		}
		if i > 0 {
			dir += "-" + strconv.Itoa(i)
		}
		log := s.log
		if n > 1 {
			log = log.With("shard", config.EmbeddedShardName(i))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sups[i], errs[i] = embedded.Start(ctx, embedded.Options{
				Dir:               dir,
				Listen:            listens[i],
				ServerURL:         urls[i],
				DERPMapPath:       mapPath,
				DERPMapRefresh:    cfg.DERP.MapRefresh,
				EphemeralTimeout:  cfg.Headscale.EphemeralGC,
				BatchDelay:        cfg.Headscale.BatchDelay,
				StoreBatchTimeout: cfg.Headscale.StoreBatch,
				Debug:             cfg.LogLevel == "debug",
				Logger:            log,
			})
		}()
	}
	wg.Wait()
	s.hs, s.hsMore = sups[0], sups[1:]
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	version := headscaleVersion()
	shards := make([]service.Shard, n)
	for i, sup := range sups {
		shards[i] = service.Shard{
			Name: config.EmbeddedShardName(i), Client: sup.Client(), LoginServer: urls[i],
			Kind: service.ShardEmbedded, Version: version,
			Admitter: verifier("http://" + loopback(listens[i]) + "/verify"),
			Process:  processOf(sup),
		}
	}
	return shards, nil
}

// shardListens returns the listen addresses of n embedded shards: the
// first is first itself; the others are more (headscale.shard_listens)
// when given, else the next free ports after first (free ephemeral ports
// when its port is 0).
func shardListens(first string, more []string, n int) ([]string, error) {
	if len(more) > 0 {
		return append([]string{first}, more...), nil
	}
	host, port, err := net.SplitHostPort(first)
	if err != nil {
		return nil, err
	}
	if port == "0" {
		// Every listener stays open until all are known, so no two
		// shards are handed the same port.
		out := make([]string, n)
		for i := range n {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				return nil, fmt.Errorf("finding a free port: %w", err)
			}
			defer ln.Close()
			out[i] = ln.Addr().String()
		}
		return out, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("headscale.listen: bad port %q", port)
	}
	out := []string{first}
	for len(out) < n {
		p++
		if p > 65535 {
			return nil, fmt.Errorf("no free port after %s for %d headscale shards", first, n)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: the next one
		}
		ln.Close()
		out = append(out, addr)
	}
	return out, nil
}

// loopback turns an address this process listens on into one it can
// dial: an unspecified host (all interfaces) becomes the loopback.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// headscaleVersion is the version of Headscale built into this binary,
// which is what the embedded children run.
func headscaleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range bi.Deps {
		if m.Path == "github.com/juanfont/headscale" {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return ""
}

// processOf reports an embedded shard's child: pid, CPU time and resident
// memory from /proc (Linux; elsewhere the pid and restarts only).
func processOf(sup *embedded.Supervisor) func() (service.ShardProcess, bool) {
	return func() (service.ShardProcess, bool) {
		pid := sup.PID()
		if pid == 0 {
			return service.ShardProcess{}, false
		}
		p := service.ShardProcess{PID: pid, Restarts: sup.Restarts()}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// The fields after the command name, which may hold spaces:
			// ") state ppid … utime stime" (utime is the 12th).
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) {
				if f := strings.Fields(string(b[i+2:])); len(f) > 12 {
					ut, _ := strconv.ParseInt(f[11], 10, 64)
					st, _ := strconv.ParseInt(f[12], 10, 64)
					p.CPUSeconds = float64(ut+st) / 100 // USER_HZ is 100 on Linux
				}
			}
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 1 {
				pages, _ := strconv.ParseInt(f[1], 10, 64)
				p.RSSBytes = pages * int64(os.Getpagesize())
			}
		}
		return p, true
	}
}

// closeShards stops the embedded shards after the first and closes the
// external shards' connections (shard 0 is closed where it always was).
func (s *Server) closeShards() error {
	var errs []error
	for _, sup := range s.hsMore {
		if sup != nil {
			errs = append(errs, sup.Close())
		}
	}
	for _, c := range s.extClients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Shards returns the supervisors of the embedded shards, shard 0 first.
func (s *Server) Shards() []*embedded.Supervisor {
	if s.hs == nil {
		return nil
	}
	return append([]*embedded.Supervisor{s.hs}, s.hsMore...)
}

// shardsReady reports the first embedded shard whose child is not ready.
func (s *Server) shardsReady() error {
	for i, sup := range s.Shards() {
		if !sup.Ready() {
			if i == 0 {
				return errors.New("headscale is not ready")
			}
			return fmt.Errorf("headscale shard %s is not ready", config.EmbeddedShardName(i))
		}
	}
	return nil
}

// shardCollector exports what the health loop last saw of each shard.
type shardCollector struct{ svc *service.Service }

var (
	shardHealthyDesc = prometheus.NewDesc("roomnet_headscale_shard_healthy", "1 when the Headscale shard answered its last health check.", []string{"shard"}, nil)
	shardNodesDesc   = prometheus.NewDesc("roomnet_headscale_shard_nodes", "Nodes registered on the Headscale shard at its last check.", []string{"shard"}, nil)
	shardCapDesc     = prometheus.NewDesc("roomnet_headscale_shard_node_cap", "Nodes a shard holds before it takes no new rooms.", []string{"shard"}, nil)
	shardQuarDesc    = prometheus.NewDesc("roomnet_headscale_shard_quarantined", "1 while a Headscale shard that came back after its loss waits to be reconciled (it takes no new rooms).", []string{"shard"}, nil)
	roomsMovedDesc   = prometheus.NewDesc("roomnet_rooms_moved_total", "Rooms this process moved off lost Headscale shards.", nil, nil)
)

func (c shardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- shardHealthyDesc
	ch <- shardNodesDesc
	ch <- shardCapDesc
	ch <- shardQuarDesc
	ch <- roomsMovedDesc
}

func (c shardCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.svc.ShardLoads() {
		healthy := 0.0
		if l.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(shardHealthyDesc, prometheus.GaugeValue, healthy, l.Name)
		ch <- prometheus.MustNewConstMetric(shardNodesDesc, prometheus.GaugeValue, float64(l.Nodes), l.Name)
		ch <- prometheus.MustNewConstMetric(shardCapDesc, prometheus.GaugeValue, float64(l.NodeCap), l.Name)
		quarantined := 0.0
		if l.Quarantined {
			quarantined = 1
		}
		ch <- prometheus.MustNewConstMetric(shardQuarDesc, prometheus.GaugeValue, quarantined, l.Name)
	}
	ch <- prometheus.MustNewConstMetric(roomsMovedDesc, prometheus.CounterValue, float64(c.svc.RoomsMoved()))
}

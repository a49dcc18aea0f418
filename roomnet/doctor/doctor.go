// Package doctor is the preflight a player (or a launcher) runs before
// "join room": can this machine reach the server and its relays, is the
// login good, does UDP get out, and what kind of NAT is it behind. Each
// check ends with a verdict in plain words and what to do about it.
//
// It sends only what a room session would: HTTPS to the server and to the
// relays in the server's DERP map, STUN binding requests to their STUN
// ports (some padded to measure the path's MTU), and the port mapper's
// questions to the LAN's gateway (NAT-PMP, PCP, SSDP; no mapping is made).
package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/roomnet"
)

// Status of a check.
const (
	OK   = "ok"   // nothing to do
	Warn = "warn" // rooms work, but worse than they could
	Fail = "fail" // rooms will not work until this is fixed
	Skip = "skip" // could not be checked
)

// Check is one finding.
type Check struct {
	Name    string         `json:"name"` // server, login, relays, udp, nat, portmap, mtu
	Status  string         `json:"status"`
	Summary string         `json:"summary"`          // what was found
	Advice  string         `json:"advice,omitempty"` // what to do, when something is
	Details map[string]any `json:"details,omitempty"`
}

// Options says what to check.
type Options struct {
	Server string // the roomnet server's URL
	Token  string // the login to check; empty: not signed in
	// Timeout bounds each network probe [3s].
	Timeout time.Duration
	// Dialer opens the probes' connections [net.Dialer]; ListenPacket the
	// STUN socket [net.ListenPacket]. Tests point them elsewhere.
	Dialer       func(ctx context.Context, network, addr string) (net.Conn, error)
	ListenPacket func(network, addr string) (net.PacketConn, error)
	// PortMap asks the LAN's gateway which port-mapping protocols it
	// speaks [tailscale's port mapper against the default gateway].
	PortMap func(ctx context.Context) (PortMapResult, error)
}

// Run runs every check and returns them in a fixed order: server, login,
// relays, udp, nat, portmap, mtu.
func Run(ctx context.Context, o Options) []Check {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Dialer == nil {
		d := &net.Dialer{}
		o.Dialer = d.DialContext
	}
	if o.ListenPacket == nil {
		o.ListenPacket = net.ListenPacket
	}
	if o.PortMap == nil {
		o.PortMap = probePortMap
	}
	hc := &http.Client{Timeout: o.Timeout, Transport: &http.Transport{DialContext: o.Dialer}}
	server := checkServer(ctx, hc, o.Server)
	if server.Status == Fail {
		return []Check{server,
			{Name: "login", Status: Skip, Summary: "not checked: the server cannot be reached"},
			{Name: "relays", Status: Skip, Summary: "not checked: the server cannot be reached"},
			{Name: "udp", Status: Skip, Summary: "not checked: the server cannot be reached"},
			{Name: "nat", Status: Skip, Summary: "not checked: the server cannot be reached"},
			{Name: "portmap", Status: Skip, Summary: "not checked: the server cannot be reached"},
			{Name: "mtu", Status: Skip, Summary: "not checked: the server cannot be reached"}}
	}
	c := roomnet.NewClient(o.Server).WithHTTPClient(hc)
	checks := []Check{server, checkLogin(ctx, c, o.Token)}
	var dm tailcfg.DERPMap
	if err := c.Do(ctx, http.MethodGet, "/api/v1/derpmap", nil, &dm); err != nil {
		why := "the server did not give its relay list: " + err.Error()
		return append(checks,
			Check{Name: "relays", Status: Fail, Summary: why, Advice: "try again later; if it stays, tell the server's operator"},
			Check{Name: "udp", Status: Skip, Summary: "not checked: no relay list"},
			Check{Name: "nat", Status: Skip, Summary: "not checked: no relay list"},
			Check{Name: "portmap", Status: Skip, Summary: "not checked: no relay list"},
			Check{Name: "mtu", Status: Skip, Summary: "not checked: no relay list"})
	}
	checks = append(checks, checkRelays(ctx, o, &dm))
	udpNAT, dsts := checkUDP(ctx, o, &dm)
	checks = append(checks, udpNAT...)
	nat := udpNAT[len(udpNAT)-1]
	switch {
	case natIsNone(nat):
		checks = append(checks, Check{Name: "portmap", Status: Skip, Summary: "not needed: this machine has a public address"})
	case udpNAT[0].Status != OK:
		checks = append(checks, Check{Name: "portmap", Status: Skip, Summary: "not checked: a mapped port carries UDP, which does not get out here"})
	default:
		pctx, cancel := context.WithTimeout(ctx, o.Timeout)
		r, err := o.PortMap(pctx)
		cancel()
		pm := portMapVerdict(r, err, nat)
		if pm.Status == OK && nat.Status == Warn && (r.UPnP || r.PMP || r.PCP) {
			// The router's port mapping is what hole punching would
			// have given: the hard NAT is no longer in the way.
			nat.Status, nat.Advice = OK, ""
			nat.Summary, _, _ = strings.Cut(nat.Summary, ";")
			nat.Summary += ", but the router maps a port for rooms: other players connect directly anyway"
			checks[len(checks)-1] = nat
		}
		checks = append(checks, pm)
	}
	if udpNAT[0].Status != OK {
		return append(checks, Check{Name: "mtu", Status: Skip, Summary: "not checked: no STUN answer (without UDP, rooms run over TCP, which sizes its own packets)"})
	}
	return append(checks, checkMTU(ctx, o, dsts[0]))
}

func checkServer(ctx context.Context, hc *http.Client, server string) Check {
	c := Check{Name: "server", Details: map[string]any{"url": server}}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/healthz", nil)
	if err != nil {
		c.Status, c.Summary, c.Advice = Fail, "not a server address: "+err.Error(), "check the server URL (roomnet login --server URL)"
		return c
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.Status, c.Summary = Fail, "cannot reach "+server+": "+shortErr(err)
		c.Advice = "check this machine's internet connection and the server URL; a firewall or proxy may block it"
		return c
	}
	resp.Body.Close()
	ms := msSince(start)
	c.Details["ms"] = ms
	switch resp.StatusCode {
	case http.StatusOK:
		c.Status, c.Summary = OK, fmt.Sprintf("%s answers in %s", server, formatMS(ms))
	case http.StatusServiceUnavailable:
		c.Status, c.Summary = Warn, fmt.Sprintf("%s answers but says it is degraded", server)
		c.Advice = "joining may fail for a while; the server's operator is told by its health checks"
	default:
		c.Status, c.Summary = Fail, fmt.Sprintf("%s answered %s: is it a roomnet server?", server, resp.Status)
		c.Advice = "check the server URL"
	}
	return c
}

func checkLogin(ctx context.Context, c *roomnet.Client, token string) Check {
	if token == "" {
		return Check{Name: "login", Status: Warn, Summary: "not signed in", Advice: "run roomnet login --server URL"}
	}
	u, err := c.WithToken(token).Me(ctx)
	var ae *roomnet.Error
	switch {
	case err == nil:
		return Check{Name: "login", Status: OK, Summary: "signed in as " + u.Username}
	case errors.As(err, &ae) && ae.Code == roomnet.CodeUnauthorized:
		return Check{Name: "login", Status: Fail, Summary: "the login expired or was revoked", Advice: "run roomnet login"}
	case errors.As(err, &ae):
		return Check{Name: "login", Status: Fail, Summary: "the server refused the login: " + ae.Message, Advice: "run roomnet login; if it is refused again, ask the server's operator"}
	}
	return Check{Name: "login", Status: Skip, Summary: "could not be checked: " + shortErr(err)}
}

// relayNode is one node of the DERP map with its region.
type relayNode struct {
	region string
	node   *tailcfg.DERPNode
}

func nodes(dm *tailcfg.DERPMap) []relayNode {
	var out []relayNode
	ids := make([]int, 0, len(dm.Regions))
	for id := range dm.Regions {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		r := dm.Regions[id]
		if r == nil {
			continue
		}
		for _, n := range r.Nodes {
			out = append(out, relayNode{region: fmt.Sprintf("%s (%d)", r.RegionCode, id), node: n})
		}
	}
	return out
}

// host is what a node is dialled by: its IPv4 literal, else its name.
func host(n *tailcfg.DERPNode) string {
	if n.IPv4 != "" && n.IPv4 != "none" {
		return n.IPv4
	}
	return n.HostName
}

// checkRelays fetches each relay's probe over HTTPS, as a node's DERP
// connection would reach it.
func checkRelays(ctx context.Context, o Options, dm *tailcfg.DERPMap) Check {
	c := Check{Name: "relays"}
	type result struct {
		region string
		ms     float64
		err    error
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	for _, rn := range nodes(dm) {
		if rn.node.STUNOnly {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms, err := probeRelay(ctx, o, rn.node)
			mu.Lock()
			results = append(results, result{rn.region, ms, err})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(results) == 0 {
		c.Status, c.Summary, c.Advice = Fail, "the server lists no relay", "tell the server's operator: without a relay players behind strict networks cannot connect"
		return c
	}
	sort.Slice(results, func(i, j int) bool { return results[i].region < results[j].region })
	var ok, bad []string
	best := map[string]float64{}
	for _, r := range results {
		if r.err != nil {
			bad = append(bad, fmt.Sprintf("%s: %s", r.region, shortErr(r.err)))
			continue
		}
		if old, seen := best[r.region]; !seen || r.ms < old {
			best[r.region] = r.ms
		}
	}
	for _, r := range results {
		if ms, seen := best[r.region]; seen {
			ok = append(ok, fmt.Sprintf("%s %s", r.region, formatMS(ms)))
			delete(best, r.region)
		}
	}
	c.Details = map[string]any{"reachable": ok, "unreachable": bad}
	switch {
	case len(ok) == 0:
		c.Status, c.Summary = Fail, "no relay can be reached: "+strings.Join(bad, "; ")
		c.Advice = "a firewall or proxy blocks HTTPS to the relays; players whose connection needs a relay will not reach you"
	case len(bad) > 0:
		c.Status, c.Summary = Warn, "reachable: "+strings.Join(ok, ", ")+"; not: "+strings.Join(bad, "; ")
		c.Advice = "rooms use the reachable relays; tell the server's operator about the others if this stays"
	default:
		c.Status, c.Summary = OK, "reachable: "+strings.Join(ok, ", ")
	}
	return c
}

func probeRelay(ctx context.Context, o Options, n *tailcfg.DERPNode) (float64, error) {
	port := n.DERPPort
	if port == 0 {
		port = 443
	}
	tr := &http.Transport{DialContext: o.Dialer, TLSClientConfig: &tls.Config{ServerName: n.HostName, InsecureSkipVerify: n.InsecureForTests}} //nolint:gosec // a self-signed development relay says so in the map
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: o.Timeout, Transport: tr}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(host(n), strconv.Itoa(port))+"/derp/probe", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("probe answered %s", resp.Status)
	}
	return msSince(start), nil
}

// checkUDP asks every STUN port in the map from one socket: whether any
// answers (UDP gets out), and whether the public port it reports is the
// same for every destination (an easy NAT) or not (a hard one).
func checkUDP(ctx context.Context, o Options, dm *tailcfg.DERPMap) ([]Check, []netip.AddrPort) {
	var dsts []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, rn := range nodes(dm) {
		if rn.node.STUNPort < 0 {
			continue
		}
		port := rn.node.STUNPort
		if port == 0 {
			port = 3478
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host(rn.node))
		if err != nil || len(ips) == 0 {
			continue
		}
		ap := netip.AddrPortFrom(ips[0].Unmap(), uint16(port))
		if !seen[ap] {
			seen[ap] = true
			dsts = append(dsts, ap)
		}
	}
	if len(dsts) == 0 {
		return []Check{
			{Name: "udp", Status: Skip, Summary: "the relays offer no STUN: UDP could not be checked"},
			{Name: "nat", Status: Skip, Summary: "the relays offer no STUN: the NAT could not be checked"}}, nil
	}
	pc, err := o.ListenPacket("udp4", ":0")
	if err != nil {
		return []Check{
			{Name: "udp", Status: Skip, Summary: "no UDP socket: " + err.Error()},
			{Name: "nat", Status: Skip, Summary: "not checked"}}, dsts
	}
	defer pc.Close()
	mapped, rtts := stunAll(ctx, pc, dsts, o.Timeout)
	udp := Check{Name: "udp", Details: map[string]any{"asked": len(dsts), "answered": len(mapped)}}
	if len(mapped) == 0 {
		udp.Status, udp.Summary = Warn, "UDP does not get out (no STUN answer): rooms work, but every packet goes through a relay over TCP, with more delay"
		udp.Advice = "allow outgoing UDP on this network (a firewall, a VPN or a campus/corporate network blocks it)"
		return []Check{udp, {Name: "nat", Status: Skip, Summary: "not checked: UDP does not get out"}}, dsts
	}
	var best float64 = -1
	for _, ms := range rtts {
		if best < 0 || ms < best {
			best = ms
		}
	}
	udp.Status, udp.Summary = OK, fmt.Sprintf("UDP gets out (STUN answered in %s)", formatMS(best))
	udp.Details["ms"] = best
	return []Check{udp, natVerdict(pc, mapped)}, dsts
}

// natVerdict reads the kind of NAT from the public addresses STUN saw.
func natVerdict(pc net.PacketConn, mapped map[netip.AddrPort]netip.AddrPort) Check {
	c := Check{Name: "nat", Details: map[string]any{}}
	var publics []string
	ports := map[uint16]bool{}
	var public netip.AddrPort
	for _, m := range mapped {
		public = m
		ports[m.Port()] = true
		publics = append(publics, m.String())
	}
	sort.Strings(publics)
	c.Details["public"] = publics
	if local, ok := pc.LocalAddr().(*net.UDPAddr); ok && local.Port == int(public.Port()) && isLocal(public.Addr()) {
		c.Status, c.Summary = OK, "no NAT: this machine has a public address ("+public.Addr().String()+"); others connect to it directly"
		return c
	}
	if len(mapped) < 2 {
		c.Status, c.Summary = Skip, fmt.Sprintf("behind a NAT (public %s); its kind needs two STUN addresses and the server offers one", public)
		c.Advice = "the server's operator can set derp.stun_alt_listen to make this check possible"
		return c
	}
	if len(ports) == 1 {
		c.Status, c.Summary = OK, fmt.Sprintf("easy NAT: one public address %s for every destination; direct connections work with most players", public)
		return c
	}
	c.Status, c.Summary = Warn, fmt.Sprintf("hard NAT: the public port changes with each destination (%s); connections to players behind hard or strict NATs go through a relay", strings.Join(publics, ", "))
	c.Advice = "rooms still work, relayed; for direct connections enable UPnP or NAT-PMP on the router, or use a network without carrier-grade NAT"
	return c
}

// isLocal reports whether a is an address of this machine.
func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}

// stunAll sends binding requests to every destination (three tries,
// 300 ms apart) and returns each one's mapped address and round trip.
func stunAll(ctx context.Context, pc net.PacketConn, dsts []netip.AddrPort, timeout time.Duration) (map[netip.AddrPort]netip.AddrPort, map[netip.AddrPort]float64) {
	type pending struct {
		dst  netip.AddrPort
		sent time.Time
	}
	var mu sync.Mutex
	txs := map[stun.TxID]pending{}
	mapped := map[netip.AddrPort]netip.AddrPort{}
	rtts := map[netip.AddrPort]float64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			tx, addr, err := stun.ParseResponse(buf[:n])
			if err != nil {
				continue
			}
			mu.Lock()
			if p, ok := txs[tx]; ok {
				if _, have := mapped[p.dst]; !have {
					mapped[p.dst], rtts[p.dst] = addr, msSince(p.sent)
				}
			}
			complete := len(mapped) == len(dsts)
			mu.Unlock()
			if complete {
				return
			}
		}
	}()
	deadline := time.Now().Add(timeout)
	_ = pc.SetReadDeadline(deadline)
	for try := 0; try < 3; try++ {
		mu.Lock()
		for _, d := range dsts {
			if _, have := mapped[d]; have {
				continue
			}
			tx := stun.NewTxID()
			txs[tx] = pending{d, time.Now()}
			_, _ = pc.WriteTo(stun.Request(tx), net.UDPAddrFromAddrPort(d))
		}
		mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
			continue
		}
		break
	}
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(time.Until(deadline)):
	}
	_ = pc.SetReadDeadline(time.Now()) // ends the reader
	<-done
	mu.Lock()
	defer mu.Unlock()
	return mapped, rtts
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func formatMS(ms float64) string {
	if ms < 1 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// shortErr drops the method and URL Go's HTTP client puts before the
// cause.
func shortErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

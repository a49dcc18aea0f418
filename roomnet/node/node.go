// Package node brings a member's WireGuard node into a room's network in
// userspace (tsnet: no TUN, no admin rights) and keeps it off the
// internet: no log upload, and dials only to known peers (a tsnet dial to
// a non-peer would fall back to the host network). Its port mapper asks
// the LAN's default gateway, and nothing beyond it, for a port (UPnP IGD,
// NAT-PMP, PCP), which lets players behind hard NATs connect directly. It
// can instead drive the machine's own Tailscale client (Attach), whose
// TUN device lets games see room addresses directly.
//
// A node can also serve its room as a peer relay (Options.RelayPort):
// two members that cannot reach each other directly (both behind hard
// NATs) then relay their UDP through it instead of through DERP, when the
// control plane's policy grants tailscale.com/cap/relay within the room.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	_ "tailscale.com/feature/relayserver" // tsnet does not link it: Options.RelayPort
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"

	"github.com/roomnet/roomnet/roomnet"
)

// ErrNotPeer reports a dial to an address that is not a peer in the room.
var ErrNotPeer = errors.New("node: address is not a peer in this room")

// Options configures a node.
type Options struct {
	Dir      string // state directory (created 0700)
	Hostname string
	Grant    roomnet.JoinGrant
	Logf     logger.Logf // nil: discard
	// RelayPort, when not 0, makes the node a peer relay for its room on
	// this UDP port of the machine (all its addresses): roommates that
	// cannot reach each other directly relay through it. Only a machine
	// that both can reach helps: a public address, or a router that
	// forwards this port to it. It costs this machine's bandwidth: it
	// receives what a relayed pair sends each other and sends it on.
	RelayPort uint16
}

// Node is a running room node.
type Node struct {
	ts *tsnet.Server
	lc *local.Client
	ip netip.Addr
}

// Peer is another node of the room as this node sees it.
type Peer struct {
	Name    string
	IPs     []netip.Addr
	Online  bool
	Direct  bool   // a direct UDP path is in use
	Relay   string // DERP region code in use or preferred
	CurAddr string // direct endpoint when Direct
	// PeerRelay is the peer relay in use ("ip:port:vni:N", a roommate's
	// relay server), when not direct and not through DERP.
	PeerRelay string
	Expired   bool // cut off by the server; no longer reachable
}

// hardenOnce guards process-wide knobs: envknob may only be written
// before tailscale goroutines read it.
var hardenOnce sync.Once

// Harden sets the process-wide tailscale knobs that keep nodes from
// talking to anything but our servers and the LAN's gateway: no log
// upload. Start calls it; call it earlier, before any node exists, when
// also setting other knobs.
//
// The port mapper stays on: tailscale's net/portmapper sends NAT-PMP and
// PCP to the default gateway's port 5351, SSDP to the gateway and to the
// LAN's multicast group, and fetches the UPnP description from the
// gateway's address whatever the answer named; it does nothing unless
// both the gateway and this machine have private addresses
// (netmon.LikelyHomeRouterIP). NoPortMapper turns it off.
func Harden() {
	hardenOnce.Do(func() {
		envknob.SetNoLogsNoSupport()
	})
}

// NoPortMapper switches the port mapper off for every node of the
// process (tests on one machine, load tools, and players who do not want
// their router asked). Call it before any node exists.
func NoPortMapper() {
	envknob.Setenv("TS_DISABLE_PORTMAPPER", "1")
}

// Start brings the node up with the grant's single-use key and returns
// once it is running with an address.
func Start(ctx context.Context, o Options) (*Node, error) {
	Harden()
	if o.Grant.AuthKey == "" || o.Grant.LoginServer == "" {
		return nil, errors.New("node: the grant has no key or login server")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating node state dir: %w", err)
	}
	logf := o.Logf
	if logf == nil {
		logf = logger.Discard
	}
	ts := &tsnet.Server{
		Dir:        o.Dir,
		Hostname:   o.Hostname,
		ControlURL: o.Grant.LoginServer,
		AuthKey:    o.Grant.AuthKey,
		Ephemeral:  true,
		Logf:       logf,
		UserLogf:   logf,
	}
	st, err := ts.Up(ctx)
	if err != nil {
		ts.Close()
		return nil, fmt.Errorf("bringing node up: %w", err)
	}
	lc, err := ts.LocalClient()
	if err != nil {
		ts.Close()
		return nil, err
	}
	if o.RelayPort != 0 {
		port := o.RelayPort
		if _, err := lc.EditPrefs(ctx, &ipn.MaskedPrefs{Prefs: ipn.Prefs{RelayServerPort: &port}, RelayServerPortSet: true}); err != nil {
			ts.Close()
			return nil, fmt.Errorf("turning the peer relay on: %w", err)
		}
	}
	n := &Node{ts: ts, lc: lc}
	for _, a := range st.TailscaleIPs {
		if a.Is4() {
			n.ip = a
		}
	}
	if !n.ip.IsValid() && len(st.TailscaleIPs) > 0 {
		n.ip = st.TailscaleIPs[0]
	}
	return n, nil
}

// ErrAttached reports a userspace-only operation on a node that drives
// the machine's Tailscale client: the system routes room addresses itself.
var ErrAttached = errors.New("node: the machine's Tailscale client carries this room; use the room addresses directly")

// Attach drives the Tailscale client already running on this machine
// (tailscaled with a TUN device) through its LocalAPI at socket ("": the
// platform's default): it points that client at the room's control server
// and logs it in with the grant's single-use key, then returns once it is
// running with an address. Games then reach room addresses directly, with
// no forwarding. The client leaves whatever tailnet it was on for the
// session; Logout logs it out of the room.
func Attach(ctx context.Context, socket string, grant roomnet.JoinGrant, hostname string) (*Node, error) {
	if grant.AuthKey == "" || grant.LoginServer == "" {
		return nil, errors.New("node: the grant has no key or login server")
	}
	lc := &local.Client{Socket: socket, UseSocketOnly: socket != ""}
	prefs := ipn.NewPrefs()
	prefs.ControlURL = grant.LoginServer
	prefs.WantRunning = true
	prefs.Hostname = hostname
	prefs.CorpDNS = false  // the room has no DNS to push
	prefs.RouteAll = false // nor routes
	if err := lc.Start(ctx, ipn.Options{AuthKey: grant.AuthKey, UpdatePrefs: prefs}); err != nil {
		return nil, fmt.Errorf("talking to tailscaled (is it running? --tailscale-socket): %w", err)
	}
	st, err := lc.StatusWithoutPeers(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading tailscaled status: %w", err)
	}
	if !st.HaveNodeKey {
		if err := lc.StartLoginInteractive(ctx); err != nil {
			return nil, fmt.Errorf("logging tailscaled in: %w", err)
		}
	}
	n := &Node{lc: lc}
	for {
		st, err := lc.StatusWithoutPeers(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading tailscaled status: %w", err)
		}
		if st.BackendState == "Running" && st.Self != nil {
			for _, a := range st.Self.TailscaleIPs {
				if a.Is4() {
					n.ip = a
				}
			}
			if n.ip.IsValid() {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("tailscaled did not come up in the room (state %s): %w", st.BackendState, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Attached reports whether the node is the machine's Tailscale client.
func (n *Node) Attached() bool { return n.ts == nil }

// IP is the node's room address (IPv4 when it has one).
func (n *Node) IP() netip.Addr { return n.ip }

// Tsnet exposes the underlying tsnet server.
func (n *Node) Tsnet() *tsnet.Server { return n.ts }

// Peers lists the room's other nodes as this node's netmap has them.
func (n *Node) Peers(ctx context.Context) ([]Peer, error) {
	st, err := n.lc.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading node status: %w", err)
	}
	out := make([]Peer, 0, len(st.Peer))
	for _, p := range st.Peer {
		out = append(out, peerOf(p))
	}
	return out, nil
}

func peerOf(p *ipnstate.PeerStatus) Peer {
	return Peer{
		Name: p.HostName, IPs: p.TailscaleIPs, Online: p.Online,
		Direct: p.CurAddr != "", CurAddr: p.CurAddr, Relay: p.Relay, Expired: p.Expired,
		PeerRelay: p.PeerRelay,
	}
}

// State is the node's backend state: "Running" while it is in the room,
// "NeedsLogin" once the server has cut it off.
func (n *Node) State(ctx context.Context) (string, error) {
	st, err := n.lc.StatusWithoutPeers(ctx)
	if err != nil {
		return "", fmt.Errorf("reading node status: %w", err)
	}
	return st.BackendState, nil
}

// IsPeer reports whether ip belongs to a live peer in the room and this
// node itself is still in the room.
func (n *Node) IsPeer(ctx context.Context, ip netip.Addr) (bool, error) {
	st, err := n.lc.Status(ctx)
	if err != nil {
		return false, fmt.Errorf("reading node status: %w", err)
	}
	if st.BackendState != "Running" {
		return false, nil
	}
	for _, p := range st.Peer {
		if p.Expired {
			continue
		}
		for _, a := range p.TailscaleIPs {
			if a == ip {
				return true, nil
			}
		}
	}
	return false, nil
}

// WaitPeer waits until ip is a peer in this node's netmap.
func (n *Node) WaitPeer(ctx context.Context, ip netip.Addr) error {
	for {
		ok, err := n.IsPeer(ctx, ip)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for peer %s: %w", ip, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// WaitReachable waits until the peer at ip answers a disco ping, which
// means it has this node in its netmap too. Only then is a WireGuard
// handshake sure to be accepted: a handshake the peer drops because it
// has not heard of this node yet is retried only after 5 s.
func (n *Node) WaitReachable(ctx context.Context, ip netip.Addr) error {
	if err := n.WaitPeer(ctx, ip); err != nil {
		return err
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, 75*time.Millisecond)
		res, err := n.lc.Ping(pctx, ip, tailcfg.PingDisco)
		cancel()
		if err == nil && res.Err == "" {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for peer %s to answer: %w", ip, ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Ping measures the round trip to a peer with a disco ping (no IP stack,
// no game traffic).
func (n *Node) Ping(ctx context.Context, ip netip.Addr) (time.Duration, error) {
	p, err := n.PingPath(ctx, ip)
	return p.RTT, err
}

// Path is how a ping reached a peer.
type Path struct {
	RTT      time.Duration
	Endpoint string // direct: the peer's UDP endpoint
	Relay    string // relayed through DERP: the region code
	// PeerRelay is the peer relay the ping went through
	// ("ip:port:vni:N"), when it went through one.
	PeerRelay string
}

// PingPath pings a peer with a disco ping and says how it went: directly,
// through a peer relay or through which DERP relay.
func (n *Node) PingPath(ctx context.Context, ip netip.Addr) (Path, error) {
	res, err := n.lc.Ping(ctx, ip, tailcfg.PingDisco)
	if err != nil {
		return Path{}, err
	}
	if res.Err != "" {
		return Path{}, errors.New(res.Err)
	}
	return Path{RTT: time.Duration(res.LatencySeconds * float64(time.Second)), Endpoint: res.Endpoint, Relay: res.DERPRegionCode, PeerRelay: res.PeerRelay}, nil
}

// Dial connects to a peer of the room; any other address is refused.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("node: dial wants ip:port, got %q", addr)
	}
	ok, err := n.IsPeer(ctx, ap.Addr())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotPeer, ap.Addr())
	}
	if n.ts == nil {
		var d net.Dialer
		return d.DialContext(ctx, network, addr) // the system routes the room
	}
	return n.ts.Dial(ctx, network, addr)
}

// Listen listens for TCP on the node's room address.
func (n *Node) Listen(port uint16) (net.Listener, error) {
	if n.ts == nil {
		return nil, ErrAttached
	}
	return n.ts.Listen("tcp", netip.AddrPortFrom(n.ip, port).String())
}

// ListenPacket listens for UDP on the node's room address.
func (n *Node) ListenPacket(port uint16) (net.PacketConn, error) {
	if n.ts == nil {
		return nil, ErrAttached
	}
	return n.ts.ListenPacket("udp", netip.AddrPortFrom(n.ip, port).String())
}

// Logout removes the node from the coordination server (ephemeral nodes
// are deleted at once) and stops it.
func (n *Node) Logout(ctx context.Context) error {
	if n.ts == nil {
		return n.lc.Logout(ctx)
	}
	err := n.lc.Logout(ctx)
	return errors.Join(err, n.Close())
}

// Close stops the node; an attached client is logged out of the room
// instead (the daemon keeps running).
func (n *Node) Close() error {
	if n.ts == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return n.lc.Logout(ctx)
	}
	return n.ts.Close()
}

package lan

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/time/rate"
)

// BridgePort is the room-network UDP port bridges talk on.
const BridgePort = 7650

// Bounds of the bridge's state.
const (
	maxFlows = 64              // remote announcing game sockets served at once
	flowIdle = 2 * time.Minute // a flow without traffic is closed
	echoTTL  = 2 * time.Second // how long a re-emitted packet is recognised as the bridge's own
)

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// BridgeOptions configures a Bridge.
type BridgeOptions struct {
	Profile Profile
	Stack   Stack
	// Room is the bridge's socket on the room network (BridgePort).
	Room net.PacketConn
	// Peers returns the room addresses of the room's other members: the
	// only addresses the bridge sends to or accepts from.
	Peers func() []netip.Addr
	// LocalPort maps a host's game port to the port that leads to it on
	// this machine, for announcements that embed it [the same port].
	LocalPort func(uint16) uint16
	// GameSocket returns this machine's socket that forwards a game port
	// of the host's (a player's forwarder), or nil. Packets whose source
	// is that port on the host's side are sent from it here, so a game
	// that answers or connects to their source reaches the host's game.
	GameSocket func(port uint16) *net.UDPConn
	// LocalAddr is the address this machine's games reach the others'
	// games through: the address rewritten into payloads in place of the
	// sender's LAN and room addresses [the first IPv4 address of an up
	// LAN interface of the stack].
	LocalAddr netip.Addr
	// Routed says this machine routes the room's addresses itself (the
	// CLI's --tun: the system's Tailscale client with a TUN device). The
	// sender's LAN and room addresses inside payloads are then rewritten
	// to the sender's room address, which games here reach directly,
	// instead of to LocalAddr, where no forwarder listens.
	Routed bool
	// PerSec and Burst bound what the bridge forwards each way: what it
	// sends in all, and what it accepts from each peer [20, 40].
	PerSec float64
	Burst  int
	Logf   func(string, ...any)
}

// Bridge carries a game's LAN discovery across a room. Packets the local
// game broadcasts or multicasts on the profile's ports go, as unicast over
// the room network, to every other member's bridge, which sends them
// again on its own LAN from the announcing game's source port where it
// can (so mDNS comes from 5353 and a game that answers to the source
// reaches the announcing game); what a game answers travels back to the
// announcing game, from the answering game's port, and what the
// announcing game then sends to the answer's source reaches the game that
// answered. Addresses of the sender inside payloads are rewritten to this
// machine's. So each member's game sees the others' games as if they
// were in one house, for announce-only and query-and-reply discovery
// alike.
type Bridge struct {
	o        BridgeOptions
	captures []*net.UDPConn
	out      *rate.Limiter
	seed     maphash.Seed

	mu      sync.Mutex
	in      map[netip.Addr]*rate.Limiter
	flows   map[flowKey]*flow     // remote games' announcements re-emitted here
	returns map[flowKey]*flow     // per peer and answering port: replies delivered to local games
	games   map[uint16]netip.Addr // local game socket port → its address
	echoes  map[uint64]time.Time  // hashes of what the bridge sent on the LAN, until when
	bcasts  []netip.Addr          // the LAN's broadcast addresses
	closed  bool
	wg      sync.WaitGroup

	// Counters.
	Captured, Sent, Received, Emitted, Dropped atomic.Int64
}

type flowKey struct {
	peer netip.Addr
	port uint16 // flows: the announcing game's source port there; returns: the answering game's
}

// flow is a LAN socket of the bridge. For a remote announcing game it
// re-emits the announcements and hears the answers (last: who answered);
// for a peer's answering game it delivers answers to local games and
// hears their follow-ups. A flow that could not have its own port sends
// from a shared or forwarding socket and hears nothing (c is then not
// read by the flow).
type flow struct {
	c    *net.UDPConn
	own  bool // c is the flow's and read by it
	last atomic.Pointer[netip.AddrPort]
	used atomic.Int64 // unix nanoseconds of the last packet sent
}

// NewBridge opens the bridge's sockets and starts it; Close stops it.
func NewBridge(o BridgeOptions) (*Bridge, error) {
	if o.PerSec == 0 {
		o.PerSec, o.Burst = 20, 40
	}
	if o.LocalPort == nil {
		o.LocalPort = func(p uint16) uint16 { return p }
	}
	if o.GameSocket == nil {
		o.GameSocket = func(uint16) *net.UDPConn { return nil }
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := o.Profile.validate(); err != nil {
		return nil, err
	}
	if !o.LocalAddr.IsValid() && !o.Routed {
		a, err := o.Stack.lanAddr()
		if err != nil {
			o.Logf("lan: addresses inside discovery packets are not rewritten: %v", err)
		}
		o.LocalAddr = a
	}
	b := &Bridge{o: o, out: rate.NewLimiter(rate.Limit(o.PerSec), o.Burst), in: map[netip.Addr]*rate.Limiter{}, seed: maphash.MakeSeed(),
		flows: map[flowKey]*flow{}, returns: map[flowKey]*flow{}, games: map[uint16]netip.Addr{}, echoes: map[uint64]time.Time{}}
	bcasts, err := o.Stack.broadcasts()
	if err != nil {
		return nil, err
	}
	for _, a := range bcasts {
		b.bcasts = append(b.bcasts, netip.MustParseAddr(a))
	}
	for _, d := range o.Profile.Discovery {
		// Capture sockets are bound to the broadcast or group address, not
		// to the port alone: unicast to the port (a game's answers) stays
		// with the game's own socket.
		addrs := []string{d.Group}
		if d.Method == Broadcast {
			addrs = bcasts
		}
		for _, a := range addrs {
			c, err := o.Stack.listenShared(net.JoinHostPort(a, strconv.Itoa(int(d.Port))))
			if err != nil {
				b.Close()
				return nil, fmt.Errorf("lan: listening for %s on %s port %d: %w", d.Method, a, d.Port, err)
			}
			b.captures = append(b.captures, c)
			if d.Method == Multicast {
				if err := JoinGroup(o.Stack, c, d.Group); err != nil {
					b.Close()
					return nil, err
				}
			}
			b.wg.Add(1)
			go b.capture(c, d)
		}
	}
	b.wg.Add(1)
	go b.receive()
	return b, nil
}

// send sends a packet to a peer's bridge within the bridge's rate.
func (b *Bridge) send(peer netip.Addr, p Packet) {
	b.sendTo(netip.AddrPortFrom(peer, BridgePort), p)
}

// sendTo sends a packet to a peer's socket within the bridge's rate.
func (b *Bridge) sendTo(to netip.AddrPort, p Packet) {
	if !b.out.Allow() {
		b.Dropped.Add(1)
		return
	}
	pkt, err := p.Encode()
	if err != nil {
		b.Dropped.Add(1)
		return
	}
	if _, err := b.o.Room.WriteTo(pkt, net.UDPAddrFromAddrPort(to)); err == nil {
		b.Sent.Add(1)
	}
}

// emit sends a packet on the LAN and remembers it, so that the capture
// sockets that hear it again do not send it back.
func (b *Bridge) emit(c *net.UDPConn, payload []byte, dst netip.AddrPort) error {
	h := maphash.Bytes(b.seed, payload)
	now := time.Now()
	b.mu.Lock()
	if len(b.echoes) > 512 {
		for k, until := range b.echoes {
			if now.After(until) {
				delete(b.echoes, k)
			}
		}
	}
	b.echoes[h] = now.Add(echoTTL)
	b.mu.Unlock()
	_, err := c.WriteToUDPAddrPort(payload, dst)
	return err
}

// echo reports whether a captured packet is one the bridge emitted.
func (b *Bridge) echo(payload []byte) bool {
	h := maphash.Bytes(b.seed, payload)
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.echoes[h]
	return ok && time.Now().Before(until)
}

// capture forwards what the local game sends on one discovery port.
func (b *Bridge) capture(c *net.UDPConn, d Discovery) {
	defer b.wg.Done()
	var group netip.Addr
	if d.Method == Multicast {
		group = netip.MustParseAddr(d.Group)
	}
	buf := make([]byte, 65535)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if b.echo(buf[:n]) {
			continue // our own re-emission of a peer's packet
		}
		b.mu.Lock()
		if len(b.games) < maxFlows || b.games[src.Port()].IsValid() {
			b.games[src.Port()] = src.Addr().Unmap()
		}
		b.mu.Unlock()
		b.Captured.Add(1)
		if n > MaxPayload {
			b.Dropped.Add(1)
			continue
		}
		for _, peer := range b.o.Peers() {
			b.send(peer, Packet{Kind: KindAnnounce, Port: d.Port, Group: group, GamePort: src.Port(), Origin: src.Addr().Unmap(), Payload: buf[:n]})
		}
	}
}

func (b *Bridge) limiter(peer netip.Addr) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.in[peer]
	if !ok {
		l = rate.NewLimiter(rate.Limit(b.o.PerSec), b.o.Burst)
		b.in[peer] = l
	}
	return l
}

// receive handles what peers' bridges send.
func (b *Bridge) receive() {
	defer b.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, src, err := b.o.Room.ReadFrom(buf)
		if err != nil {
			return
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		peer, _ := netip.AddrFromSlice(ua.IP)
		peer = peer.Unmap()
		if !slices.Contains(b.o.Peers(), peer) {
			b.Dropped.Add(1) // not a member of this room
			continue
		}
		b.Received.Add(1)
		if !b.limiter(peer).Allow() {
			b.Dropped.Add(1)
			continue
		}
		p, err := Decode(buf[:n])
		if err != nil {
			b.Dropped.Add(1)
			continue
		}
		if p.Kind == KindProfileQuery {
			if !b.answerProfile(netip.AddrPortFrom(peer, ua.AddrPort().Port())) {
				b.Dropped.Add(1)
			}
			continue
		}
		if !b.deliver(peer, p) {
			b.Dropped.Add(1)
			continue
		}
		b.Emitted.Add(1)
	}
}

// rewrite maps the sender's addresses in a payload to the address games
// here reach the sender's games through: this machine's (forwarded), or
// with Routed the sender's room address.
func (b *Bridge) rewrite(peer netip.Addr, p Packet, d Discovery) []byte {
	from := []netip.Addr{peer}
	if p.Origin.IsValid() {
		from = append(from, p.Origin)
	}
	to := b.o.LocalAddr
	if b.o.Routed {
		to = peer
	}
	out := RewriteAddrs(p.Payload, from, to, d.Rewrite == RewriteDNS)
	if d.Rewrite == RewriteMinecraft {
		out = rewriteMinecraft(out, b.o.LocalPort)
	}
	return out
}

// deliver puts a peer's packet on the local network.
func (b *Bridge) deliver(peer netip.Addr, p Packet) bool {
	switch p.Kind {
	case KindAnnounce:
		d, ok := b.discovery(p)
		if !ok {
			return false // not what this room's game uses
		}
		dst := netip.AddrPortFrom(limitedBroadcast, p.Port)
		if p.Group.IsValid() {
			dst = netip.AddrPortFrom(p.Group, p.Port)
		}
		f := b.flow(flowKey{peer, p.GamePort}, dst.Addr())
		if f == nil {
			return false
		}
		return b.emit(f.c, b.rewrite(peer, p, d), dst) == nil
	case KindDirect:
		b.mu.Lock()
		f := b.flows[flowKey{peer, p.GamePort}]
		b.mu.Unlock()
		if f == nil || f.last.Load() == nil {
			return false // nobody here answered that game
		}
		to := *f.last.Load()
		if p.Port != 0 {
			to = netip.AddrPortFrom(to.Addr(), p.Port)
		}
		_, err := f.c.WriteToUDPAddrPort(p.Payload, to)
		return err == nil
	case KindReply:
		b.mu.Lock()
		game := b.games[p.GamePort]
		b.mu.Unlock()
		if !game.IsValid() {
			return false // no local game announced from that port
		}
		f := b.returnTo(flowKey{peer, p.Port})
		if f == nil {
			return false
		}
		payload := b.rewrite(peer, p, Discovery{Rewrite: b.replyRewrite()})
		return b.emit(f.c, payload, netip.AddrPortFrom(game, p.GamePort)) == nil
	}
	return false
}

// replyRewrite is how replies are rewritten: as DNS when the profile
// bridges DNS.
func (b *Bridge) replyRewrite() string {
	for _, d := range b.o.Profile.Discovery {
		if d.Rewrite == RewriteDNS {
			return RewriteDNS
		}
	}
	return ""
}

// socket opens a LAN socket that sends from port, as the remote game
// did: a player's forwarding socket of that port when there is one; the
// port itself when no program here uses it (answers to it then reach
// the flow); else shared on the non-unicast address shared, which hears
// nothing (answers go to the program that uses the port here, as they
// would on one LAN); else a port of its own.
func (b *Bridge) socket(port uint16, shared netip.Addr) (c *net.UDPConn, own bool, err error) {
	if port != 0 {
		if c := b.o.GameSocket(port); c != nil {
			return c, false, nil
		}
		used, err := b.o.Stack.portBound(port, b.bcasts)
		if err == nil && !used {
			if c, err := b.o.Stack.listenShared("0.0.0.0:" + strconv.Itoa(int(port))); err == nil {
				return c, true, nil
			}
		}
		if c, err := b.o.Stack.listenShared(netip.AddrPortFrom(shared, port).String()); err == nil {
			return c, false, nil
		} else if !errors.Is(err, syscall.EADDRINUSE) {
			b.o.Logf("lan: sending from port %d: %v", port, err)
		}
	}
	c, err = b.o.Stack.listenShared("0.0.0.0:0")
	return c, true, err
}

// open makes a LAN socket of the bridge that sends from port; when it
// has the socket to itself it reads it with handle until it is idle for
// flowIdle or closed. Called with b.mu held.
func (b *Bridge) open(port uint16, shared netip.Addr, handle func(f *flow, src netip.AddrPort, payload []byte), forget func()) *flow {
	c, own, err := b.socket(port, shared)
	if err != nil {
		b.o.Logf("lan: opening a flow socket: %v", err)
		return nil
	}
	f := &flow{c: c, own: own}
	f.used.Store(time.Now().UnixNano())
	if !own {
		if c != b.o.GameSocket(port) {
			setMulticastOut(c)
		}
		return f // sends only; swept when idle, closed by Close
	}
	setMulticastOut(c)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			b.mu.Lock()
			forget()
			b.mu.Unlock()
			c.Close()
		}()
		ep := ipv4.NewPacketConn(c)
		dst := ep.SetControlMessage(ipv4.FlagDst, true) == nil
		buf := make([]byte, 65535)
		for {
			_ = c.SetReadDeadline(time.Now().Add(flowIdle))
			n, cm, from, err := ep.ReadFrom(buf)
			if err != nil {
				return
			}
			ua, ok := from.(*net.UDPAddr)
			if !ok {
				continue
			}
			if dst && cm != nil && b.nonUnicast(cm.Dst) {
				continue // a broadcast or multicast to the port: the captures have it
			}
			if n <= MaxPayload && !b.echo(buf[:n]) {
				handle(f, ua.AddrPort(), buf[:n])
			}
		}
	}()
	return f
}

func setMulticastOut(c *net.UDPConn) {
	ep := ipv4.NewPacketConn(c)
	_ = ep.SetMulticastTTL(1) // announcements stay on the local network
	_ = ep.SetMulticastLoopback(true)
}

// nonUnicast reports whether ip is a broadcast or multicast address.
func (b *Bridge) nonUnicast(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	return a.IsMulticast() || slices.Contains(b.bcasts, a)
}

// sweep closes the flows that only send and have been idle for
// flowIdle (the others end themselves). Called with b.mu held.
func (b *Bridge) sweep(m map[flowKey]*flow) {
	old := time.Now().Add(-flowIdle).UnixNano()
	for k, f := range m {
		if !f.own && f.used.Load() < old {
			b.release(f, k.port)
			delete(m, k)
		}
	}
}

// release closes a send-only flow's socket unless it is a forwarder's.
func (b *Bridge) release(f *flow, port uint16) {
	if f.c != b.o.GameSocket(port) {
		f.c.Close()
	}
}

// flow returns the socket that re-emits a remote game's announcements
// (to dst); what is answered to it goes back to that game.
func (b *Bridge) flow(k flowKey, dst netip.Addr) *flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.flows[k]; ok || b.closed {
		if f != nil {
			f.used.Store(time.Now().UnixNano())
		}
		return f
	}
	if len(b.flows) >= maxFlows {
		b.sweep(b.flows)
		if len(b.flows) >= maxFlows {
			return nil
		}
	}
	f := b.open(k.port, dst, func(f *flow, src netip.AddrPort, payload []byte) {
		f.last.Store(&src)
		b.send(k.peer, Packet{Kind: KindReply, GamePort: k.port, Port: src.Port(), Origin: src.Addr().Unmap(), Payload: payload})
	}, func() { delete(b.flows, k) })
	if f != nil {
		b.flows[k] = f
	}
	return f
}

// returnTo returns the socket that delivers the answers of a peer's game
// (k.port: its source port) to local games; what a local game then
// sends to it goes to the game that answered, as a direct packet.
func (b *Bridge) returnTo(k flowKey) *flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.returns[k]; ok || b.closed {
		if f != nil {
			f.used.Store(time.Now().UnixNano())
		}
		return f
	}
	if len(b.returns) >= maxFlows {
		b.sweep(b.returns)
		if len(b.returns) >= maxFlows {
			return nil
		}
	}
	f := b.open(k.port, limitedBroadcast, func(_ *flow, src netip.AddrPort, payload []byte) {
		b.send(k.peer, Packet{Kind: KindDirect, GamePort: src.Port(), Port: k.port, Payload: payload})
	}, func() { delete(b.returns, k) })
	if f != nil {
		b.returns[k] = f
	}
	return f
}

// discovery finds the profile's discovery an announcement belongs to.
func (b *Bridge) discovery(p Packet) (Discovery, bool) {
	for _, d := range b.o.Profile.Discovery {
		if d.Port != p.Port {
			continue
		}
		if d.Method == Broadcast && !p.Group.IsValid() {
			return d, true
		}
		if d.Method == Multicast && p.Group.IsValid() && p.Group.String() == d.Group {
			return d, true
		}
	}
	return Discovery{}, false
}

// Close stops the bridge and closes its sockets (Room too).
func (b *Bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	for k, f := range b.flows {
		b.release(f, k.port)
	}
	for k, f := range b.returns {
		b.release(f, k.port)
	}
	b.mu.Unlock()
	for _, c := range b.captures {
		c.Close()
	}
	if b.o.Room != nil {
		b.o.Room.Close()
	}
	b.wg.Wait()
	return nil
}

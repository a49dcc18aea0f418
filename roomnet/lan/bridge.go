package lan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
)

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
	// PerSec and Burst bound what the bridge forwards each way: what it
	// sends in all, and what it accepts from each peer [20, 40].
	PerSec float64
	Burst  int
	Logf   func(string, ...any)
}

// Bridge carries a game's LAN discovery across a room. Packets the local
// game broadcasts or multicasts on the profile's ports go, as unicast over
// the room network, to every other member's bridge, which sends them
// again on its own LAN from a socket of that flow; what a game answers to
// that socket travels back to the announcing game, and what the
// announcing game then sends to the answer's source reaches the game that
// answered. So each member's game sees the others' games as if they were
// in one house, for announce-only and query-and-reply discovery alike.
type Bridge struct {
	o        BridgeOptions
	captures []*net.UDPConn
	out      *rate.Limiter

	mu      sync.Mutex
	in      map[netip.Addr]*rate.Limiter
	flows   map[flowKey]*flow     // remote games' announcements re-emitted here
	returns map[netip.Addr]*flow  // per peer: replies delivered to local games from here
	games   map[uint16]netip.Addr // local game socket port → its address
	own     map[uint16]bool       // local ports of the bridge's sockets
	closed  bool
	wg      sync.WaitGroup

	// Counters.
	Captured, Sent, Received, Emitted, Dropped atomic.Int64
}

type flowKey struct {
	peer netip.Addr
	game uint16 // the announcing game's source port on that peer
}

// flow is a LAN socket of the bridge. For a remote announcing game it
// re-emits the announcements and hears the answers (last: who answered);
// for a peer's returns it delivers answers to local games and hears
// their follow-ups.
type flow struct {
	c    *net.UDPConn
	last atomic.Pointer[netip.AddrPort]
}

// NewBridge opens the bridge's sockets and starts it; Close stops it.
func NewBridge(o BridgeOptions) (*Bridge, error) {
	if o.PerSec == 0 {
		o.PerSec, o.Burst = 20, 40
	}
	if o.LocalPort == nil {
		o.LocalPort = func(p uint16) uint16 { return p }
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := o.Profile.validate(); err != nil {
		return nil, err
	}
	b := &Bridge{o: o, out: rate.NewLimiter(rate.Limit(o.PerSec), o.Burst), in: map[netip.Addr]*rate.Limiter{},
		flows: map[flowKey]*flow{}, returns: map[netip.Addr]*flow{}, games: map[uint16]netip.Addr{}, own: map[uint16]bool{}}
	for _, d := range o.Profile.Discovery {
		// Capture sockets are bound to the broadcast or group address, not
		// to the port alone: unicast to the port (a game's answers) stays
		// with the game's own socket.
		addrs := []string{d.Group}
		if d.Method == Broadcast {
			var err error
			if addrs, err = o.Stack.broadcasts(); err != nil {
				b.Close()
				return nil, err
			}
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
	if !b.out.Allow() {
		b.Dropped.Add(1)
		return
	}
	pkt, err := p.Encode()
	if err != nil {
		b.Dropped.Add(1)
		return
	}
	if _, err := b.o.Room.WriteTo(pkt, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, BridgePort))); err == nil {
		b.Sent.Add(1)
	}
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
		b.mu.Lock()
		ours := b.own[src.Port()]
		if !ours && (len(b.games) < maxFlows || b.games[src.Port()].IsValid()) {
			b.games[src.Port()] = src.Addr().Unmap()
		}
		b.mu.Unlock()
		if ours {
			continue // our own re-emission of a peer's announcement
		}
		b.Captured.Add(1)
		if n > MaxPayload {
			b.Dropped.Add(1)
			continue
		}
		for _, peer := range b.o.Peers() {
			b.send(peer, Packet{Kind: KindAnnounce, Port: d.Port, Group: group, GamePort: src.Port(), Payload: buf[:n]})
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
		if !b.deliver(peer, p) {
			b.Dropped.Add(1)
			continue
		}
		b.Emitted.Add(1)
	}
}

// deliver puts a peer's packet on the local network.
func (b *Bridge) deliver(peer netip.Addr, p Packet) bool {
	switch p.Kind {
	case KindAnnounce:
		d, ok := b.discovery(p)
		if !ok {
			return false // not what this room's game uses
		}
		f := b.flow(flowKey{peer, p.GamePort})
		if f == nil {
			return false
		}
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), p.Port)
		if p.Group.IsValid() {
			dst = netip.AddrPortFrom(p.Group, p.Port)
		}
		_, err := f.c.WriteToUDPAddrPort(rewrite(d.Rewrite, p.Payload, b.o.LocalPort), dst)
		return err == nil
	case KindDirect:
		b.mu.Lock()
		f := b.flows[flowKey{peer, p.GamePort}]
		b.mu.Unlock()
		if f == nil || f.last.Load() == nil {
			return false // nobody here answered that game
		}
		_, err := f.c.WriteToUDPAddrPort(p.Payload, *f.last.Load())
		return err == nil
	case KindReply:
		b.mu.Lock()
		game := b.games[p.GamePort]
		b.mu.Unlock()
		if !game.IsValid() {
			return false // no local game announced from that port
		}
		f := b.returnTo(peer)
		if f == nil {
			return false
		}
		_, err := f.c.WriteToUDPAddrPort(p.Payload, netip.AddrPortFrom(game, p.GamePort))
		return err == nil
	}
	return false
}

// open makes a LAN socket of the bridge and reads it with handle until it
// is idle for flowIdle or closed.
func (b *Bridge) open(handle func(f *flow, src netip.AddrPort, payload []byte), forget func()) *flow {
	c, err := b.o.Stack.listenShared("0.0.0.0:0")
	if err != nil {
		b.o.Logf("lan: opening a flow socket: %v", err)
		return nil
	}
	ep := ipv4.NewPacketConn(c)
	_ = ep.SetMulticastTTL(1) // announcements stay on the local network
	_ = ep.SetMulticastLoopback(true)
	f := &flow{c: c}
	b.own[uint16(c.LocalAddr().(*net.UDPAddr).Port)] = true
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			b.mu.Lock()
			forget()
			delete(b.own, uint16(c.LocalAddr().(*net.UDPAddr).Port))
			b.mu.Unlock()
			c.Close()
		}()
		buf := make([]byte, 65535)
		for {
			_ = c.SetReadDeadline(time.Now().Add(flowIdle))
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n <= MaxPayload {
				handle(f, src, buf[:n])
			}
		}
	}()
	return f
}

// flow returns the socket that re-emits a remote game's announcements;
// what is answered to it goes back to that game.
func (b *Bridge) flow(k flowKey) *flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.flows[k]; ok || b.closed {
		return f
	}
	if len(b.flows) >= maxFlows {
		return nil
	}
	f := b.open(func(f *flow, src netip.AddrPort, payload []byte) {
		f.last.Store(&src)
		b.send(k.peer, Packet{Kind: KindReply, GamePort: k.game, Payload: payload})
	}, func() { delete(b.flows, k) })
	if f != nil {
		b.flows[k] = f
	}
	return f
}

// returnTo returns the socket that delivers a peer's answers to local
// games; what a local game then sends to it goes to the game that
// answered, as a direct packet of the game's flow.
func (b *Bridge) returnTo(peer netip.Addr) *flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.returns[peer]; ok || b.closed {
		return f
	}
	f := b.open(func(_ *flow, src netip.AddrPort, payload []byte) {
		b.send(peer, Packet{Kind: KindDirect, GamePort: src.Port(), Payload: payload})
	}, func() { delete(b.returns, peer) })
	if f != nil {
		b.returns[peer] = f
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
	for _, f := range b.flows {
		f.c.Close()
	}
	for _, f := range b.returns {
		f.c.Close()
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

package lan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/time/rate"
)

// BridgePort is the room-network UDP port bridges talk on.
const BridgePort = 7650

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
	// PerSec and Burst bound what the bridge forwards each way: captured
	// packets in all, and received packets per peer [20, 40].
	PerSec float64
	Burst  int
	Logf   func(string, ...any)
}

// Bridge carries a game's LAN discovery across a room: packets the local
// game broadcasts or multicasts on the profile's ports are sent, as
// unicast over the room network, to every other member's bridge, which
// sends them again on its own LAN, so each member's game sees the others'
// announcements as if they were in one house.
type Bridge struct {
	o        BridgeOptions
	emitter  *net.UDPConn
	emitPort uint16
	captures []*net.UDPConn
	out      *rate.Limiter

	mu sync.Mutex
	in map[netip.Addr]*rate.Limiter
	wg sync.WaitGroup

	// Counters.
	Captured, Sent, Received, Emitted, Dropped atomic.Int64
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
	b := &Bridge{o: o, out: rate.NewLimiter(rate.Limit(o.PerSec), o.Burst), in: map[netip.Addr]*rate.Limiter{}}
	var err error
	if b.emitter, err = o.Stack.listenShared("0.0.0.0:0"); err != nil {
		return nil, fmt.Errorf("lan: emitter: %w", err)
	}
	b.emitPort = uint16(b.emitter.LocalAddr().(*net.UDPAddr).Port)
	ep := ipv4.NewPacketConn(b.emitter)
	_ = ep.SetMulticastTTL(1) // announcements stay on the local network
	_ = ep.SetMulticastLoopback(true)
	for _, d := range o.Profile.Discovery {
		c, err := o.Stack.listenShared(":" + strconv.Itoa(int(d.Port)))
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("lan: listening for %s on port %d: %w", d.Method, d.Port, err)
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
	b.wg.Add(1)
	go b.receive()
	return b, nil
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
		if src.Port() == b.emitPort {
			continue // our own re-emission of a peer's announcement
		}
		b.Captured.Add(1)
		if n > MaxPayload || !b.out.Allow() {
			b.Dropped.Add(1)
			continue
		}
		pkt, err := Packet{Port: d.Port, Group: group, Payload: buf[:n]}.Encode()
		if err != nil {
			b.Dropped.Add(1)
			continue
		}
		for _, peer := range b.o.Peers() {
			if _, err := b.o.Room.WriteTo(pkt, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, BridgePort))); err == nil {
				b.Sent.Add(1)
			}
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

// receive sends peers' announcements on the local network.
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
		d, ok := b.discovery(p)
		if !ok {
			b.Dropped.Add(1) // not what this room's game uses
			continue
		}
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), p.Port)
		if p.Group.IsValid() {
			dst = netip.AddrPortFrom(p.Group, p.Port)
		}
		payload := rewrite(d.Rewrite, p.Payload, b.o.LocalPort)
		if _, err := b.emitter.WriteToUDPAddrPort(payload, dst); err != nil {
			b.o.Logf("lan: re-emitting to %s: %v", dst, err)
			continue
		}
		b.Emitted.Add(1)
	}
}

// discovery finds the profile's discovery a received packet belongs to.
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
	if b.emitter != nil {
		b.emitter.Close()
	}
	for _, c := range b.captures {
		c.Close()
	}
	if b.o.Room != nil {
		b.o.Room.Close()
	}
	b.wg.Wait()
	return nil
}

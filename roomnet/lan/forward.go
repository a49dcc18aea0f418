package lan

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Room is the room network as the forwarder needs it; *node.Node is one.
type Room interface {
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	Listen(port uint16) (net.Listener, error)
	ListenPacket(port uint16) (net.PacketConn, error)
}

// Forwarder makes a "direct connect" game work over a userspace node: on
// a player's machine the host's game ports listen locally (on Bind) and
// lead to the host; on the host's machine the room's traffic to those
// ports reaches the game on 127.0.0.1.
type Forwarder struct {
	Room  Room
	Stack Stack  // the local network side
	Bind  string // player side: local address the ports listen on
	Logf  func(string, ...any)

	mu      sync.Mutex
	closers []io.Closer
	udp     map[uint16]*net.UDPConn // player side: the forwarded UDP ports' sockets
}

// UDPSocket returns the player side's socket that forwards a UDP game
// port of the host's, or nil. The LAN bridge sends the host's game's
// packets from it, so what the local game answers to their source goes
// to the host's game.
func (f *Forwarder) UDPSocket(port uint16) *net.UDPConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.udp[port]
}

func (f *Forwarder) keep(c io.Closer) {
	f.mu.Lock()
	f.closers = append(f.closers, c)
	f.mu.Unlock()
}

// Close stops forwarding.
func (f *Forwarder) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.closers {
		c.Close()
	}
}

func splitPort(p string) (uint16, string) {
	num, proto, _ := strings.Cut(p, "/")
	n, _ := strconv.Atoi(num)
	return uint16(n), proto
}

// ServePlayer listens on Bind:port for each port and forwards to the host.
func (f *Forwarder) ServePlayer(ctx context.Context, host netip.Addr, ports []string) error {
	for _, p := range ports {
		port, proto := splitPort(p)
		local := net.JoinHostPort(f.Bind, strconv.Itoa(int(port)))
		remote := netip.AddrPortFrom(host, port)
		switch proto {
		case "tcp":
			ln, err := f.Stack.Listen("tcp", local)
			if err != nil {
				return fmt.Errorf("forwarding %s: %v (is the game port in use here?)", p, err)
			}
			f.keep(ln)
			go f.tcpLoop(ln, func(ctx context.Context) (net.Conn, error) { return f.Room.Dial(ctx, "tcp", remote.String()) })
		case "udp":
			// Shared (SO_REUSEADDR), so that the LAN bridge may capture
			// broadcasts to the same port; it may broadcast, since the
			// bridge sends the host's game's announcements from it.
			pc, err := f.Stack.listenShared(local)
			if err != nil {
				return fmt.Errorf("forwarding %s: %v (is the game port in use here?)", p, err)
			}
			f.keep(pc)
			f.mu.Lock()
			if f.udp == nil {
				f.udp = map[uint16]*net.UDPConn{}
			}
			f.udp[port] = pc
			f.mu.Unlock()
			go f.udpLoop(pc, func() (net.PacketConn, net.Addr, error) {
				c, err := f.Room.ListenPacket(0)
				return c, net.UDPAddrFromAddrPort(remote), err
			})
		}
		f.Logf("forwarding %s/%s → host %s", local, proto, remote)
	}
	return nil
}

// ServeHost forwards the room's traffic to the host's local game.
func (f *Forwarder) ServeHost(ctx context.Context, ports []string) error {
	for _, p := range ports {
		port, proto := splitPort(p)
		local := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
		switch proto {
		case "tcp":
			ln, err := f.Room.Listen(port)
			if err != nil {
				return fmt.Errorf("serving %s: %v", p, err)
			}
			f.keep(ln)
			go f.tcpLoop(ln, func(ctx context.Context) (net.Conn, error) {
				return f.Stack.DialContext(ctx, "tcp", local)
			})
		case "udp":
			pc, err := f.Room.ListenPacket(port)
			if err != nil {
				return fmt.Errorf("serving %s: %v", p, err)
			}
			f.keep(pc)
			addr, _ := net.ResolveUDPAddr("udp", local)
			go f.udpLoop(pc, func() (net.PacketConn, net.Addr, error) {
				c, err := f.Stack.ListenPacket("udp", "127.0.0.1:0")
				return c, addr, err
			})
		}
		f.Logf("room port %d/%s → game at %s", port, proto, local)
	}
	return nil
}

func (f *Forwarder) tcpLoop(ln net.Listener, dial func(context.Context) (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			up, err := dial(ctx)
			cancel()
			if err != nil {
				f.Logf("forward: %v", err)
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); done <- struct{}{} }()
			go func() { io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// udpLoop relays datagrams: each source address on pc gets its own
// upstream socket, whose answers go back to that source. Idle flows
// expire after two minutes.
func (f *Forwarder) udpLoop(pc net.PacketConn, upstream func() (net.PacketConn, net.Addr, error)) {
	type flow struct {
		c   net.PacketConn
		dst net.Addr
	}
	var mu sync.Mutex
	flows := map[string]*flow{}
	buf := make([]byte, 65535)
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil {
			mu.Lock()
			for _, fl := range flows {
				fl.c.Close()
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		fl, ok := flows[src.String()]
		if !ok {
			c, dst, err := upstream()
			if err != nil {
				mu.Unlock()
				f.Logf("forward udp: %v", err)
				continue
			}
			fl = &flow{c: c, dst: dst}
			flows[src.String()] = fl
			go func(src net.Addr, fl *flow) {
				b := make([]byte, 65535)
				for {
					fl.c.SetReadDeadline(time.Now().Add(2 * time.Minute))
					n, _, err := fl.c.ReadFrom(b)
					if err != nil {
						mu.Lock()
						delete(flows, src.String())
						mu.Unlock()
						fl.c.Close()
						return
					}
					pc.WriteTo(b[:n], src)
				}
			}(src, fl)
		}
		mu.Unlock()
		if _, err := fl.c.WriteTo(buf[:n], fl.dst); err != nil {
			f.Logf("forward udp: %v", err)
		}
	}
}

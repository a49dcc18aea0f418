package cli

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roomnet/roomnet/roomnet/node"
)

// forwarder makes a "direct connect" game work over a userspace node: on
// a player's machine the host's game ports listen locally and lead to the
// host; on the host's machine the room's traffic to those ports reaches
// the game on 127.0.0.1.
type forwarder struct {
	n       *node.Node
	bind    string
	logf    func(string, ...any)
	mu      sync.Mutex
	closers []io.Closer
}

func (f *forwarder) keep(c io.Closer) {
	f.mu.Lock()
	f.closers = append(f.closers, c)
	f.mu.Unlock()
}

func (f *forwarder) close() {
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

// servePlayer listens on bind:port for each port and forwards to the host.
func (f *forwarder) servePlayer(ctx context.Context, host netip.Addr, ports []string) error {
	for _, p := range ports {
		port, proto := splitPort(p)
		local := net.JoinHostPort(f.bind, strconv.Itoa(int(port)))
		remote := netip.AddrPortFrom(host, port)
		switch proto {
		case "tcp":
			ln, err := net.Listen("tcp", local)
			if err != nil {
				return fail(ExitError, "forwarding %s: %v (is the game port in use here?)", p, err)
			}
			f.keep(ln)
			go f.tcpLoop(ln, func(ctx context.Context) (net.Conn, error) { return f.n.Dial(ctx, "tcp", remote.String()) })
		case "udp":
			pc, err := net.ListenPacket("udp", local)
			if err != nil {
				return fail(ExitError, "forwarding %s: %v (is the game port in use here?)", p, err)
			}
			f.keep(pc)
			go f.udpLoop(pc, func() (net.PacketConn, net.Addr, error) {
				c, err := f.n.ListenPacket(0)
				return c, net.UDPAddrFromAddrPort(remote), err
			})
		}
		f.logf("forwarding %s/%s → host %s", local, proto, remote)
	}
	return nil
}

// serveHost forwards the room's traffic to the host's local game.
func (f *forwarder) serveHost(ctx context.Context, ports []string) error {
	for _, p := range ports {
		port, proto := splitPort(p)
		local := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
		switch proto {
		case "tcp":
			ln, err := f.n.Listen(port)
			if err != nil {
				return fail(ExitError, "serving %s: %v", p, err)
			}
			f.keep(ln)
			go f.tcpLoop(ln, func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", local)
			})
		case "udp":
			pc, err := f.n.ListenPacket(port)
			if err != nil {
				return fail(ExitError, "serving %s: %v", p, err)
			}
			f.keep(pc)
			addr, _ := net.ResolveUDPAddr("udp", local)
			go f.udpLoop(pc, func() (net.PacketConn, net.Addr, error) {
				c, err := net.ListenPacket("udp", "127.0.0.1:0")
				return c, addr, err
			})
		}
		f.logf("room port %d/%s → game at %s", port, proto, local)
	}
	return nil
}

func (f *forwarder) tcpLoop(ln net.Listener, dial func(context.Context) (net.Conn, error)) {
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
				f.logf("forward: %v", err)
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
func (f *forwarder) udpLoop(pc net.PacketConn, upstream func() (net.PacketConn, net.Addr, error)) {
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
				f.logf("forward udp: %v", err)
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
			f.logf("forward udp: %v", err)
		}
	}
}

package lan

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Stack opens sockets on the machine's local network side: the current
// network namespace, or a named one (as `ip netns` names them), for games
// that run in a container, and for tests that give each simulated machine
// a LAN of its own. A socket stays in the namespace it was opened in.
type Stack struct {
	Namespace string
}

// do runs fn with the calling thread in the stack's namespace.
func (s Stack) do(fn func() error) error {
	if s.Namespace == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread's namespace changes for good: it is never unlocked,
		// so the runtime ends the thread with this goroutine.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", s.Namespace))
		if err != nil {
			errc <- fmt.Errorf("lan: namespace %q: %w", s.Namespace, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("lan: entering namespace %q: %w", s.Namespace, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen opens a TCP listener.
func (s Stack) Listen(network, addr string) (ln net.Listener, err error) {
	err = s.do(func() (e error) { ln, e = net.Listen(network, addr); return })
	return
}

// ListenPacket opens a UDP socket.
func (s Stack) ListenPacket(network, addr string) (pc net.PacketConn, err error) {
	err = s.do(func() (e error) { pc, e = net.ListenPacket(network, addr); return })
	return
}

// DialContext dials from the stack's namespace.
func (s Stack) DialContext(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = s.do(func() (e error) {
		var d net.Dialer
		c, e = d.DialContext(ctx, network, addr)
		return
	})
	return
}

// listenShared opens a UDP socket that shares its port with the game's
// (SO_REUSEADDR: broadcast and multicast reach every socket on the port)
// and may send broadcasts.
func (s Stack) listenShared(addr string) (pc *net.UDPConn, err error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	err = s.do(func() error {
		c, e := lc.ListenPacket(context.Background(), "udp4", addr)
		if e != nil {
			return e
		}
		pc = c.(*net.UDPConn)
		return nil
	})
	return
}

// interfaces lists the namespace's interfaces that take multicast.
func (s Stack) interfaces() (out []net.Interface, err error) {
	err = s.do(func() error {
		all, e := net.Interfaces()
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
				out = append(out, ifi)
			}
		}
		return e
	})
	return
}

// SharedSocket opens a UDP socket on addr in the stack's namespace that
// shares its port (SO_REUSEADDR) and may broadcast, as LAN games open
// their discovery sockets.
func SharedSocket(s Stack, addr string) (*net.UDPConn, error) { return s.listenShared(addr) }

// JoinGroup joins an IPv4 multicast group on every multicast interface of
// the stack's namespace (announcements may leave by any of them).
func JoinGroup(s Stack, c *net.UDPConn, group string) error {
	ifs, err := s.interfaces()
	if err != nil {
		return err
	}
	g := &net.UDPAddr{IP: net.ParseIP(group)}
	joined := 0
	for _, ifi := range ifs {
		if err := ipv4.NewPacketConn(c).JoinGroup(&ifi, g); err == nil {
			joined++
		}
	}
	if joined == 0 {
		return fmt.Errorf("lan: joining %s: no multicast interface", group)
	}
	return nil
}

// broadcasts lists the limited broadcast address and the directed
// broadcast address of each IPv4 network of the namespace's interfaces.
func (s Stack) broadcasts() (out []string, err error) {
	out = []string{"255.255.255.255"}
	err = s.do(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagBroadcast == 0 {
				continue
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				ipn, ok := a.(*net.IPNet)
				ip4 := ipn.IP.To4()
				if !ok || ip4 == nil || len(ipn.Mask) != net.IPv4len {
					continue
				}
				b := make(net.IP, 4)
				for i := range b {
					b[i] = ip4[i] | ^ipn.Mask[i]
				}
				if !slices.Contains(out, b.String()) {
					out = append(out, b.String())
				}
			}
		}
		return nil
	})
	return
}

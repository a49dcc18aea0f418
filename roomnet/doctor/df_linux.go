package doctor

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// dontFragment sets DF on the socket's packets and makes the system
// ignore what it learnt of the path MTU (IP_PMTUDISC_PROBE): each probe
// goes out whole at its size, and is dropped where it does not fit.
func dontFragment(pc net.PacketConn) error {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return errors.New("not a system socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	}); err != nil {
		return err
	}
	return serr
}

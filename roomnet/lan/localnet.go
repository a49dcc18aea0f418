package lan

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// cgnat is the range of room (Tailscale) addresses: never a LAN address.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// lanAddr returns the first IPv4 address of an up, non-loopback
// interface that can broadcast or multicast (not a room address): the
// address this machine's games reach the others' through.
func (s Stack) lanAddr() (out netip.Addr, err error) {
	err = s.do(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || ifi.Flags&(net.FlagBroadcast|net.FlagMulticast) == 0 {
				continue
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				ipn, ok := a.(*net.IPNet)
				if !ok {
					continue
				}
				ip, ok := netip.AddrFromSlice(ipn.IP)
				if ip = ip.Unmap(); ok && ip.Is4() && !cgnat.Contains(ip) && !ip.IsLinkLocalUnicast() {
					out = ip
					return nil
				}
			}
		}
		return errors.New("lan: no IPv4 LAN address on this machine")
	})
	return
}

// portBound reports whether a UDP socket of the stack's namespace is
// bound to port on the any address or a unicast one (not a broadcast or
// group address, as the bridge's captures are).
func (s Stack) portBound(port uint16, bcasts []netip.Addr) (used bool, err error) {
	err = s.do(func() error {
		f, err := os.Open("/proc/thread-self/net/udp")
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			addr, p, ok := strings.Cut(fields[1], ":")
			n, perr := strconv.ParseUint(p, 16, 16)
			raw, herr := hex.DecodeString(addr)
			if !ok || perr != nil || herr != nil || len(raw) != 4 || uint16(n) != port {
				continue
			}
			var b4 [4]byte
			binary.NativeEndian.PutUint32(b4[:], binary.BigEndian.Uint32(raw))
			ip := netip.AddrFrom4(b4)
			if !ip.IsMulticast() && !slices.Contains(bcasts, ip) {
				used = true
				return nil
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("lan: reading the UDP sockets: %w", err)
		}
		return nil
	})
	return
}

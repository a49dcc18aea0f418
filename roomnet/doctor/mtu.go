package doctor

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/net/stun"
)

// The sizes (whole IPv4 packets, bytes) the MTU check tries: Ethernet's
// 1500, PPPoE's 1492, what common tunnels leave, down to IPv6's minimum.
var mtuSizes = []int{1500, 1492, 1480, 1460, 1440, 1420, 1400, 1380, 1360, 1340, 1320, 1300, 1280}

// roomPacket is the largest packet a room sends: WireGuard's 1280-byte
// tunnel MTU plus its envelope (32 bytes), UDP (8) and IPv4 (20).
const roomPacket = 1280 + 32 + 8 + 20

// stunSoftware is the SOFTWARE attribute tailscale's STUN server wants.
const stunSoftware = "tailnode"

// paddedRequest is a STUN binding request of exactly size bytes of UDP
// payload: SOFTWARE, then PADDING (RFC 5780) to fill, then FINGERPRINT,
// which a tailscale STUN server checks and otherwise answers as usual.
func paddedRequest(tx stun.TxID, size int) []byte {
	const header, software, fp = 20, 4 + len(stunSoftware), 8
	pad := size - header - software - fp - 4
	pad -= pad % 4
	b := make([]byte, 0, size)
	b = append(b, 0x00, 0x01) // binding request
	b = binary.BigEndian.AppendUint16(b, uint16(software+4+pad+fp))
	b = append(b, 0x21, 0x12, 0xa4, 0x42)
	b = append(b, tx[:]...)
	b = binary.BigEndian.AppendUint16(b, 0x8022)
	b = binary.BigEndian.AppendUint16(b, uint16(len(stunSoftware)))
	b = append(b, stunSoftware...)
	b = binary.BigEndian.AppendUint16(b, 0x0026)
	b = binary.BigEndian.AppendUint16(b, uint16(pad))
	b = append(b, make([]byte, pad)...)
	crc := crc32.ChecksumIEEE(b) ^ 0x5354554e
	b = binary.BigEndian.AppendUint16(b, 0x8028)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint32(b, crc)
}

// checkMTU sends STUN requests of every size in mtuSizes to dst from a
// socket that forbids fragmentation (where the system allows that), and
// takes the largest that was answered as the path's MTU toward the relay.
func checkMTU(ctx context.Context, o Options, dst netip.AddrPort) Check {
	c := Check{Name: "mtu"}
	pc, err := o.ListenPacket("udp4", ":0")
	if err != nil {
		c.Status, c.Summary = Skip, "no UDP socket: "+err.Error()
		return c
	}
	defer pc.Close()
	if err := dontFragment(pc); err != nil {
		c.Status, c.Summary = Skip, "not measured on this system: "+err.Error()
		return c
	}
	var mu sync.Mutex
	sizeOf := map[stun.TxID]int{}
	largest := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			tx, _, err := stun.ParseResponse(buf[:n])
			if err != nil {
				continue
			}
			mu.Lock()
			if s := sizeOf[tx]; s > largest {
				largest = s
			}
			mu.Unlock()
		}
	}()
	to := net.UDPAddrFromAddrPort(dst)
	_ = pc.SetReadDeadline(time.Now().Add(o.Timeout))
	biggest := func() int { mu.Lock(); defer mu.Unlock(); return largest }
	for try := 0; try < 3 && biggest() < mtuSizes[0]; try++ {
		for _, size := range mtuSizes {
			if size <= biggest() {
				break
			}
			tx := stun.NewTxID()
			mu.Lock()
			sizeOf[tx] = size
			mu.Unlock()
			// Too big for the first hop: the system refuses it (EMSGSIZE).
			_, _ = pc.WriteTo(paddedRequest(tx, size-28), to)
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	_ = pc.SetReadDeadline(time.Now()) // ends the reader
	<-done
	c.Details = map[string]any{"relay": dst.String(), "mtu": largest}
	switch {
	case largest == 0:
		c.Status, c.Summary = Skip, fmt.Sprintf("the relay's STUN port (%s) answered none of the sized probes (%d to %d bytes)", dst, mtuSizes[len(mtuSizes)-1], mtuSizes[0])
	case largest >= roomPacket:
		c.Status, c.Summary = OK, fmt.Sprintf("packets of %d bytes reach the relay unfragmented; the room's largest (%d) fit", largest, roomPacket)
	default:
		c.Status, c.Summary = Warn, fmt.Sprintf("only packets up to %d bytes reach the relay unfragmented, less than the room's largest (%d): big game packets are split or lost on the way", largest, roomPacket)
		c.Advice = "a VPN, PPPoE or tunnel on this network lowers the MTU; if games stutter or lose large packets, try without the VPN or raise the router's WAN MTU"
	}
	return c
}

package lan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
)

// A bridged packet travels between members' bridges over the room
// network as one UDP datagram:
//
//	"RNLB" | version 1 | flags (0) | port (2) | group (4; 0.0.0.0: broadcast) | payload
//
// port is the discovery port, group the multicast group it was sent to.
const (
	magic      = "RNLB"
	version    = 1
	headerLen  = 12
	MaxPayload = 1400 // larger discovery packets are not bridged
)

// Packet is one discovery packet.
type Packet struct {
	Port    uint16
	Group   netip.Addr // invalid for a broadcast
	Payload []byte
}

// ErrPacket wraps every decoding failure.
var ErrPacket = errors.New("lan: bad bridged packet")

// Encode returns the wire form of p.
func (p Packet) Encode() ([]byte, error) {
	if len(p.Payload) == 0 || len(p.Payload) > MaxPayload {
		return nil, fmt.Errorf("lan: payload of %d bytes: want 1..%d", len(p.Payload), MaxPayload)
	}
	b := make([]byte, headerLen, headerLen+len(p.Payload))
	copy(b, magic)
	b[4] = version
	binary.BigEndian.PutUint16(b[6:], p.Port)
	if p.Group.IsValid() {
		g := p.Group.As4()
		copy(b[8:], g[:])
	}
	return append(b, p.Payload...), nil
}

// Decode parses a bridged packet from a peer: untrusted bytes.
func Decode(b []byte) (Packet, error) {
	if len(b) <= headerLen || len(b) > headerLen+MaxPayload {
		return Packet{}, fmt.Errorf("%w: %d bytes", ErrPacket, len(b))
	}
	if string(b[:4]) != magic || b[4] != version || b[5] != 0 {
		return Packet{}, fmt.Errorf("%w: header", ErrPacket)
	}
	p := Packet{Port: binary.BigEndian.Uint16(b[6:])}
	if p.Port == 0 {
		return Packet{}, fmt.Errorf("%w: port 0", ErrPacket)
	}
	if g := netip.AddrFrom4([4]byte(b[8:12])); !g.IsUnspecified() {
		if !g.IsMulticast() {
			return Packet{}, fmt.Errorf("%w: group %s is not multicast", ErrPacket, g)
		}
		p.Group = g
	}
	p.Payload = b[headerLen:]
	return p, nil
}

var minecraftAD = regexp.MustCompile(`\[AD\]([0-9]{1,5})\[/AD\]`)

// rewrite changes the addresses an announcement embeds, mapping the
// announcing host's game port to the port that leads to it here.
func rewrite(kind string, payload []byte, port func(uint16) uint16) []byte {
	if kind != "minecraft" {
		return payload
	}
	return minecraftAD.ReplaceAllFunc(payload, func(m []byte) []byte {
		n, err := strconv.ParseUint(string(minecraftAD.FindSubmatch(m)[1]), 10, 16)
		if err != nil || n == 0 {
			return m
		}
		return []byte("[AD]" + strconv.Itoa(int(port(uint16(n)))) + "[/AD]")
	})
}

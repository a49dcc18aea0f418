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
//	"RNLB" | version 1 | kind | port (2) | group (4) | game port (2) | payload
//
// An announcement (kind 0) is what a game broadcast (group 0.0.0.0) or
// multicast to the discovery port; the game port is the source port of
// the game's socket, which names the flow. A reply (kind 1) is what a
// game answered to an announcement, sent back to the announcing member
// for the game socket of that flow; a direct packet (kind 2) is what the
// announcing game then sent straight to the game that replied. Replies
// and direct packets carry neither port nor group.
const (
	magic      = "RNLB"
	version    = 1
	headerLen  = 14
	MaxPayload = 1400 // larger discovery packets are not bridged
)

// Packet kinds.
const (
	KindAnnounce byte = 0
	KindReply    byte = 1
	KindDirect   byte = 2
)

// Packet is one bridged packet.
type Packet struct {
	Kind     byte
	Port     uint16     // announcements: the discovery port
	Group    netip.Addr // announcements: the multicast group; invalid for a broadcast
	GamePort uint16     // the announcing game's source port: the flow
	Payload  []byte
}

// ErrPacket wraps every decoding failure.
var ErrPacket = errors.New("lan: bad bridged packet")

// Encode returns the wire form of p.
func (p Packet) Encode() ([]byte, error) {
	if len(p.Payload) == 0 || len(p.Payload) > MaxPayload {
		return nil, fmt.Errorf("lan: payload of %d bytes: want 1..%d", len(p.Payload), MaxPayload)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	b := make([]byte, headerLen, headerLen+len(p.Payload))
	copy(b, magic)
	b[4] = version
	b[5] = p.Kind
	binary.BigEndian.PutUint16(b[6:], p.Port)
	if p.Group.IsValid() {
		g := p.Group.As4()
		copy(b[8:], g[:])
	}
	binary.BigEndian.PutUint16(b[12:], p.GamePort)
	return append(b, p.Payload...), nil
}

// Decode parses a bridged packet from a peer: untrusted bytes.
func Decode(b []byte) (Packet, error) {
	if len(b) <= headerLen || len(b) > headerLen+MaxPayload {
		return Packet{}, fmt.Errorf("%w: %d bytes", ErrPacket, len(b))
	}
	if string(b[:4]) != magic || b[4] != version {
		return Packet{}, fmt.Errorf("%w: header", ErrPacket)
	}
	p := Packet{Kind: b[5], Port: binary.BigEndian.Uint16(b[6:]), GamePort: binary.BigEndian.Uint16(b[12:]), Payload: b[headerLen:]}
	if g := netip.AddrFrom4([4]byte(b[8:12])); !g.IsUnspecified() {
		p.Group = g
	}
	if err := p.check(); err != nil {
		return Packet{}, fmt.Errorf("%w: %v", ErrPacket, err)
	}
	return p, nil
}

func (p Packet) check() error {
	if p.GamePort == 0 {
		return errors.New("game port 0")
	}
	switch p.Kind {
	case KindAnnounce:
		if p.Port == 0 {
			return errors.New("announcement to port 0")
		}
		if p.Group.IsValid() && (!p.Group.Is4() || !p.Group.IsMulticast()) {
			return fmt.Errorf("group %s is not IPv4 multicast", p.Group)
		}
	case KindReply, KindDirect:
		if p.Port != 0 || p.Group.IsValid() {
			return errors.New("a reply or direct packet has no port or group")
		}
	default:
		return fmt.Errorf("kind %d", p.Kind)
	}
	return nil
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

package lan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// A bridged packet travels between members' bridges over the room
// network as one UDP datagram:
//
//	"RNLB" | version 2 | kind | port (2) | group (4) | game port (2) | origin (4) | payload
//
// An announcement (kind 0) is what a game broadcast (group 0.0.0.0) or
// multicast to the discovery port; the game port is the source port of
// the game's socket, which names the flow, and the origin its LAN
// address (what the receiving side rewrites in payloads). A reply
// (kind 1) is what a game answered to an announcement, sent back to the
// announcing member for the game socket of that flow; its port is the
// answering game's source port (0: unknown) and the origin its address.
// A direct packet (kind 2) is what the announcing game then sent straight
// to the game that replied; its port is that game's source port (0: the
// last one that answered). Replies and direct packets carry no group.
const (
	magic      = "RNLB"
	version    = 2
	headerLen  = 18
	MaxPayload = 1400 // larger discovery packets are not bridged
)

// Packet kinds.
const (
	KindAnnounce byte = 0
	KindReply    byte = 1
	KindDirect   byte = 2
	// A profile query and its answer (see AskProfile).
	KindProfileQuery  byte = 3
	KindProfileAnswer byte = 4
)

// Packet is one bridged packet.
type Packet struct {
	Kind     byte
	Port     uint16     // announcements: the discovery port
	Group    netip.Addr // announcements: the multicast group; invalid for a broadcast
	GamePort uint16     // the announcing game's source port: the flow
	// Origin is the IPv4 address the packet came from on the sender's
	// LAN (invalid: unknown); the receiver rewrites it in payloads.
	Origin  netip.Addr
	Payload []byte
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
	if p.Origin.IsValid() {
		o := p.Origin.As4()
		copy(b[14:], o[:])
	}
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
	if o := netip.AddrFrom4([4]byte(b[14:18])); !o.IsUnspecified() {
		p.Origin = o
	}
	if err := p.check(); err != nil {
		return Packet{}, fmt.Errorf("%w: %v", ErrPacket, err)
	}
	return p, nil
}

func (p Packet) check() error {
	if p.GamePort == 0 && p.Kind <= KindDirect {
		return errors.New("game port 0")
	}
	if p.Origin.IsValid() && (!p.Origin.Is4() || p.Origin.IsMulticast() || p.Origin.IsUnspecified() || p.Origin == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return fmt.Errorf("origin %s is not an IPv4 unicast address", p.Origin)
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
		if p.Group.IsValid() {
			return errors.New("a reply or direct packet has no group")
		}
	case KindProfileQuery, KindProfileAnswer:
		if p.Port != 0 || p.Group.IsValid() || p.GamePort != 0 || p.Origin.IsValid() {
			return errors.New("a profile query or answer has no ports or addresses")
		}
	default:
		return fmt.Errorf("kind %d", p.Kind)
	}
	return nil
}

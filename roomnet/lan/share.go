package lan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// A member without a profile for the room's game (the host bridges it
// from a --profiles file the player does not have) asks the host's bridge
// which profile it bridges: a profile query (kind 3) to the host's
// BridgePort, answered by a profile answer (kind 4) whose payload is the
// profile as JSON. Neither carries ports, group or origin.

// serviceDiscoveryPorts are the ports of the machine's own service
// discovery (NetBIOS, SSDP, mDNS, LLMNR): a profile learned from a host
// may not bridge them, since that would show the player's LAN to the
// host. The player's own catalogue may.
var serviceDiscoveryPorts = []uint16{137, 138, 1900, 5353, 5355}

// AskProfile asks the bridge of host, over the room socket pc, which
// profile it bridges, until ctx ends. A profile whose name the player's
// catalogue knows is taken from the catalogue; any other must be a
// valid profile that bridges no port below 1024 and no service
// discovery. pc is not closed.
func AskProfile(ctx context.Context, pc net.PacketConn, host netip.Addr, cat Catalogue) (Profile, error) {
	q, err := Packet{Kind: KindProfileQuery, Payload: []byte("profile?")}.Encode()
	if err != nil {
		return Profile{}, err
	}
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, BridgePort))
	buf := make([]byte, 65535)
	for {
		if _, err := pc.WriteTo(q, to); err != nil {
			return Profile{}, fmt.Errorf("lan: asking the host's profile: %w", err)
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = pc.SetReadDeadline(deadline)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			ua, ok := src.(*net.UDPAddr)
			if !ok || !ua.IP.Equal(host.AsSlice()) {
				continue
			}
			p, err := Decode(buf[:n])
			if err != nil || p.Kind != KindProfileAnswer {
				continue
			}
			_ = pc.SetReadDeadline(time.Time{})
			return acceptProfile(p.Payload, cat)
		}
		if ctx.Err() != nil {
			_ = pc.SetReadDeadline(time.Time{})
			return Profile{}, fmt.Errorf("lan: the host's bridge did not answer: %w", ctx.Err())
		}
	}
}

// acceptProfile checks a profile a host sent.
func acceptProfile(b []byte, cat Catalogue) (Profile, error) {
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return Profile{}, fmt.Errorf("lan: the host's profile: %w", err)
	}
	if cat.Has(p.Name) {
		return cat.Lookup(p.Name)
	}
	if err := p.validate(); err != nil {
		return Profile{}, fmt.Errorf("lan: the host's profile: %w", err)
	}
	if len(p.Discovery) > 8 {
		return Profile{}, errors.New("lan: the host's profile has more than 8 discoveries")
	}
	for _, d := range p.Discovery {
		if d.Port < 1024 || slices.Contains(serviceDiscoveryPorts, d.Port) {
			return Profile{}, fmt.Errorf("lan: the host's profile %q bridges %s: not taken from a host (give --lan %s, or a --profiles file, to bridge it)", p.Name, d, p.Name)
		}
	}
	p.Ports = nil // the room's ports are the room's, not the profile's
	return p, nil
}

// answerProfile answers a peer's profile query (to the socket it came from).
func (b *Bridge) answerProfile(to netip.AddrPort) bool {
	prof := b.o.Profile
	prof.Title, prof.Aliases = "", nil
	body, err := json.Marshal(prof)
	if err != nil || len(body) > MaxPayload {
		return false
	}
	b.sendTo(to, Packet{Kind: KindProfileAnswer, Payload: body})
	return true
}

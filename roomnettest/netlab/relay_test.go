package netlab_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnettest/netlab"
)

// relayPort is the UDP port the relay member serves the room on.
const relayPort = 40000

// relayResult is what the hard-NAT pair got in one lab.
type relayResult struct {
	reached   time.Duration // join started → the host's node answered
	toRelay   time.Duration // join started → first ping through the peer relay; 0: never
	final     ping
	rtts      []float64 // ms, on the final path
	mbps      float64
	peerRelay bool
	// fallback: the relay member left → the pair's first ping through
	// DERP again (with a relay only).
	fallback time.Duration
	lost     []string // what the pings meanwhile got
}

// pings pings member count times (one a second) and returns the round
// trips of those that went the way want says (peer relay or not).
func (p *player) pings(member string, count int, peerRelay bool) []float64 {
	p.t.Helper()
	code, out := p.run("", "ping", member, "--count", fmt.Sprint(count), "--json")
	var rtts []float64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r ping
		if json.Unmarshal([]byte(line), &r) == nil && r.Error == "" && r.PeerRelay == peerRelay && !r.Direct {
			rtts = append(rtts, r.RTTMS)
		}
	}
	if code != 0 || len(rtts) < count {
		p.t.Fatalf("ping %s: exit %d, %d of %d on the expected path (peer relay %v):\n%s", member, code, len(rtts), count, peerRelay, out)
	}
	return rtts
}

// Where the relay member is.
const (
	noRelay        = ""
	publicRelay    = "public"    // a public address
	forwardedRelay = "forwarded" // behind an easy NAT that forwards its relay port
	// behind an easy NAT without a forward: the roommates cannot reach
	// it (the router lets in only answers), so the pair stays on DERP.
	unreachableRelay = "behind-nat"
)

// hardNATPair hosts a room behind a symmetric NAT and joins it from
// behind another; with a relay, a third member joins first with
// --relay-port. It watches the guest's pings to the host for up to watch
// until they go through the peer relay, then measures.
func hardNATPair(t *testing.T, relay string, watch time.Duration) relayResult {
	withRelay := relay == publicRelay || relay == forwardedRelay
	lab := netlab.New(t)
	srv := startServer(t, lab.Public("srv"))
	ha, hb := lab.Home(netlab.Symmetric), lab.Home(netlab.Symmetric)
	a, b := ha.PC("alice"), hb.PC("bob")
	host := newPlayer(t, a, srv, "alice")
	guest := newPlayer(t, b, srv, "bob")
	hs := host.start("host", "--name", "lab room", "--port", gamePort+"/tcp", "--lan", "off")
	room := hs.await(t, "room", 60*time.Second)["room"].(map[string]any)
	code := room["invite_code"].(string)
	hs.await(t, "node_up", 60*time.Second)
	var relayAddr netip.Addr
	var rs *session
	homes := []*netlab.Home{ha, hb}
	if relay != noRelay {
		var r netlab.Host
		if relay != publicRelay {
			h := lab.Home(netlab.Easy)
			homes = append(homes, h)
			r = h.PC("carol")
			if relay == forwardedRelay {
				h.Forward("udp", relayPort, r)
			}
			relayAddr = h.Router.Addr
		} else {
			r = lab.Public("relay")
			relayAddr = r.Addr
		}
		rs = newPlayer(t, r, srv, "carol").start("join", code, "--lan", "off", "--relay-port", fmt.Sprint(relayPort))
		rs.await(t, "host_reached", 60*time.Second)
	}
	start := time.Now()
	gs := guest.start("join", code, "--lan", "off")
	gs.await(t, "host_reached", 60*time.Second)
	res := relayResult{reached: time.Since(start)}
	for end := time.Now().Add(watch); ; {
		p := guest.ping("alice")
		if p.Error == "" {
			res.final = p
			if p.PeerRelay && res.toRelay == 0 {
				res.toRelay = time.Since(start)
			}
		}
		if time.Now().After(end) || res.toRelay != 0 {
			break
		}
	}
	if res.final.Error != "" || res.final.RTTMS <= 0 {
		t.Fatalf("symmetric ↔ symmetric: no working path: %+v", res.final)
	}
	if res.final.Direct {
		t.Fatalf("symmetric ↔ symmetric went direct (%s): the lab's NATs are not hard", res.final.Path)
	}
	if withRelay {
		if !res.final.PeerRelay {
			t.Fatalf("with a member relaying (%s): path %q after %v, want the peer relay at %s:%d", relay, res.final.Path, watch, relayAddr, relayPort)
		}
		if !strings.HasPrefix(res.final.Path, fmt.Sprintf("%s:%d:", relayAddr, relayPort)) {
			t.Fatalf("peer relay path %q is not the relay member's %s:%d", res.final.Path, relayAddr, relayPort)
		}
	} else if res.final.PeerRelay {
		t.Fatalf("no member relays that the pair can reach (%q), yet the path is a peer relay: %q", relay, res.final.Path)
	}
	res.peerRelay = res.final.PeerRelay
	res.rtts = guest.pings("alice", 5, withRelay)
	res.mbps = throughput(t, a, b, 3*time.Second)
	// The stream went the same way: still on that path after it.
	res.rtts = append(res.rtts, guest.pings("alice", 1, withRelay)...)
	for _, h := range homes {
		if n := h.Strays(); n != 0 {
			t.Fatalf("%d packets left the home behind %s for outside the lab", n, h.Router.Addr)
		}
	}
	if withRelay {
		// The relay member leaves (Ctrl-C): the pair goes back to DERP.
		left := time.Now()
		_ = rs.cmd.Process.Signal(os.Interrupt)
		for end := time.Now().Add(30 * time.Second); ; {
			p := guest.ping("alice")
			if p.Error == "" && !p.PeerRelay && !p.Direct {
				res.fallback = time.Since(left)
				break
			}
			res.lost = append(res.lost, fmt.Sprintf("%v: %s%s", time.Since(left).Round(100*time.Millisecond), p.Path, p.Error))
			if time.Now().After(end) {
				t.Fatalf("30 s after the relay member left, the pair is not back on DERP: %+v", p)
			}
		}
	}
	return res
}

// Two players behind symmetric NATs without port mapping cannot reach
// each other directly: through DERP they work, and when a third member
// with a public address, or behind a router that forwards the port,
// serves the room as a peer relay (roomnet join --relay-port), their path
// moves to it. The figures are in docs/benchmarks.md ("Peer relays").
func TestPeerRelayBetweenHardNATs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs roomnetd and the CLI in namespaces")
	}
	for _, tc := range []struct{ name, relay string }{
		{"derp", noRelay}, {"peer-relay", publicRelay}, {"peer-relay-forwarded", forwardedRelay},
		{"relay-behind-nat", unreachableRelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := hardNATPair(t, tc.relay, 20*time.Second)
			rtts := slices.Clone(r.rtts)
			slices.Sort(rtts)
			t.Logf("RELAY symmetric ↔ symmetric via %s: reached in %v, peer relay after %v, path %q, RTT median %.2f ms (min %.2f, max %.2f, %d pings), %.0f Mbit/s, back on DERP %v after the relay left (meanwhile %q)",
				tc.name, r.reached.Round(time.Millisecond), r.toRelay.Round(time.Millisecond), r.final.Path,
				rtts[len(rtts)/2], rtts[0], rtts[len(rtts)-1], len(rtts), r.mbps, r.fallback.Round(time.Millisecond), r.lost)
		})
	}
}

package service

import (
	"net/netip"
	"slices"
	"testing"

	policyv2 "github.com/juanfont/headscale/hscontrol/policy/v2"
	"github.com/juanfont/headscale/hscontrol/types"
	"github.com/stretchr/testify/require"
	"go4.org/netipx"
	"gorm.io/gorm"
	"tailscale.com/tailcfg"
)

// The isolation policy, compiled by the Headscale roomnet embeds (its
// policy v2 package, as SetPolicy runs it): two rooms of two members; each
// node sees only its roommate as a peer, and its packet filter grants
// traffic and the peer-relay capabilities (cap/relay and Headscale's
// companion cap/relay-target) between roommates only, never with the other
// room.
func TestIsolationPolicyKeepsRelayGrantsInTheRoom(t *testing.T) {
	checkIsolation(t, IsolationPolicy, true)
}

// With rooms.peer_relays off the rooms are as isolated, and nobody gets
// cap/relay at all.
func TestIsolationPolicyWithoutPeerRelaysGrantsNoRelay(t *testing.T) {
	checkIsolation(t, IsolationPolicyNoPeerRelays, false)
}

func checkIsolation(t *testing.T, policy string, relay bool) {
	users := types.Users{
		{Model: gorm.Model{ID: 1}, Name: "room-a"},
		{Model: gorm.Model{ID: 2}, Name: "room-b"},
	}
	var nodes types.Nodes
	for i, u := range []int{0, 0, 1, 1} {
		ip4 := netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)})
		ip6 := netip.AddrFrom16([16]byte{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 15: byte(i + 1)})
		nodes = append(nodes, &types.Node{
			ID:       types.NodeID(i + 1),
			Hostname: "n" + string(rune('1'+i)),
			IPv4:     &ip4,
			IPv6:     &ip6,
			User:     &users[u],
			UserID:   &users[u].ID,
			Hostinfo: &tailcfg.Hostinfo{},
		})
	}
	pm, err := policyv2.NewPolicyManager([]byte(policy), users, nodes.ViewSlice())
	require.NoError(t, err, "Headscale refuses the isolation policy")

	room := func(n *types.Node) *netipx.IPSet {
		var b netipx.IPSetBuilder
		for _, m := range nodes {
			if *m.UserID == *n.UserID {
				b.Add(*m.IPv4)
				b.Add(*m.IPv6)
			}
		}
		s, err := b.IPSet()
		require.NoError(t, err)
		return s
	}
	peers := pm.BuildPeerMap(nodes.ViewSlice())
	for _, n := range nodes {
		mates := room(n)
		var got []types.NodeID
		for _, p := range peers[n.ID] {
			got = append(got, p.ID())
		}
		var want []types.NodeID
		for _, m := range nodes {
			if m.ID != n.ID && *m.UserID == *n.UserID {
				want = append(want, m.ID)
			}
		}
		require.ElementsMatch(t, want, got, "%s's peers", n.Hostname)

		rules, err := pm.FilterForNode(n.View())
		require.NoError(t, err)
		caps := map[tailcfg.PeerCapability]bool{}
		inRoom := func(what, s string) {
			t.Helper()
			r, err := netipx.ParseIPRange(s)
			if err != nil {
				var a netip.Addr
				if a, err = netip.ParseAddr(s); err == nil {
					r = netipx.IPRangeFrom(a, a)
				} else if p, perr := netip.ParsePrefix(s); perr == nil {
					r, err = netipx.RangeOfPrefix(p), nil
				}
			}
			require.NoError(t, err, "%s: %s %q", n.Hostname, what, s)
			require.True(t, mates.ContainsRange(r), "%s: %s %s is outside its room", n.Hostname, what, s)
		}
		for _, r := range rules {
			for _, src := range r.SrcIPs {
				inRoom("source", src)
			}
			for _, d := range r.DstPorts {
				inRoom("destination", d.IP)
			}
			for _, g := range r.CapGrant {
				for _, d := range g.Dsts {
					inRoom("capability destination", d.String())
				}
				for c := range g.CapMap {
					caps[c] = true
				}
			}
		}
		require.Equal(t, relay, caps[tailcfg.PeerCapabilityRelay], "%s: cap/relay from its roommate; rules %+v", n.Hostname, rules)
		require.Equal(t, relay, caps[tailcfg.PeerCapabilityRelayTarget], "%s: cap/relay-target; rules %+v", n.Hostname, rules)
		require.True(t, slices.ContainsFunc(rules, func(r tailcfg.FilterRule) bool { return len(r.DstPorts) > 0 }), "%s: no traffic allowed", n.Hostname)
	}
}

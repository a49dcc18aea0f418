package roomnetd_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// A member on the official Tailscale client sends no path report; the
// admin still sees how it reaches its peers, inferred by the server from
// Headscale and the embedded DERP relay. On loopback every packet goes
// through the relay, so the pair that talks shows "relayed" both ways.
func TestServerInfersPathsForOfficialClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tailscaled")
	}
	o := startOfficialRoom(t, "server paths")
	h, bob, room := o.h, o.bob, o.room

	members := func(c *roomnet.Client) map[string]roomnet.Member {
		ms, err := c.Members(roomnettest.Context(t, 10*time.Second), room.ID)
		require.NoError(t, err)
		out := map[string]roomnet.Member{}
		for _, m := range ms {
			out[m.Username] = m
		}
		return out
	}

	eventually(t, 60*time.Second, "official client reaches the host", func() error { return o.nc("hello") })

	link := func(m roomnet.Member, peer string) (roomnet.Link, bool) {
		for _, l := range m.Links {
			if l.Peer == peer {
				return l, true
			}
		}
		return roomnet.Link{}, false
	}
	eventually(t, 20*time.Second, "both sides shown relayed by the server", func() error {
		ms := members(h.Admin)
		for _, p := range [][2]string{{"bob", "alice"}, {"alice", "bob"}} {
			m := ms[p[0]]
			if m.PathSource != "server" || m.ReportedAt == nil {
				return fmt.Errorf("%s: source %q", p[0], m.PathSource)
			}
			l, ok := link(m, p[1])
			if !ok {
				return fmt.Errorf("%s has no link to %s: %+v", p[0], p[1], m.Links)
			}
			if l.Direct || l.Inferred || l.Relay != h.Config.DERP.RegionCode || l.Addr != "" {
				return fmt.Errorf("%s→%s: %+v", p[0], p[1], l)
			}
		}
		return nil
	})
	// Members see the inferred paths too (they carry no endpoints).
	mine := members(bob)["bob"]
	require.Equal(t, "server", mine.PathSource)
	l, ok := link(mine, "alice")
	require.True(t, ok, "%+v", mine.Links)
	require.False(t, l.Direct)
	require.Empty(t, l.Addr)

	// A member who has left has no node online: no paths, and the other
	// side no longer lists a link to it.
	require.NoError(t, bob.Leave(roomnettest.Context(t, 10*time.Second), room.ID))
	eventually(t, 20*time.Second, "bob's link gone", func() error {
		ms := members(h.Admin)
		if _, ok := ms["bob"]; ok {
			return fmt.Errorf("bob still listed")
		}
		if l, ok := link(ms["alice"], "bob"); ok {
			return fmt.Errorf("alice still links bob: %+v", l)
		}
		return nil
	})
}

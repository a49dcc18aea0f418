package relays

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/roomnet"
)

func TestCountersDoNotRewriteTheMapAndGiveThroughput(t *testing.T) {
	var writes atomic.Int32
	r, err := New(nil, 30*time.Second, func(*tailcfg.DERPMap) error { writes.Add(1); return nil })
	require.NoError(t, err)
	defer r.Close()
	now := time.Unix(5000, 0)
	r.now = func() time.Time { return now }
	hb := roomnet.RelayHeartbeat{RegionID: 901, RegionCode: "eu", RegionName: "Europe",
		Node: roomnet.RelayNode{Name: "901a", HostName: "derp.example.com", DERPPort: 443, STUNPort: 3478}}
	hb.Stats = &roomnet.RelayStats{Clients: 3, BytesReceived: 1000, BytesSent: 1000}
	require.NoError(t, r.Heartbeat(hb))
	require.EqualValues(t, 1, writes.Load())

	now = now.Add(10 * time.Second)
	hb.Stats = &roomnet.RelayStats{Clients: 4, BytesReceived: 51000, BytesSent: 51000}
	require.NoError(t, r.Heartbeat(hb))
	require.EqualValues(t, 1, writes.Load(), "new counters are not a new DERP map")
	l := r.List()
	require.Len(t, l, 1)
	require.True(t, l[0].Healthy)
	require.Equal(t, 4, l[0].Stats.Clients)
	require.InDelta(t, 10000, l[0].BytesPerSec, 1e-9, "100 kB in 10 s")

	hb.Node.DERPPort = 8443
	require.NoError(t, r.Heartbeat(hb))
	require.EqualValues(t, 2, writes.Load(), "a moved relay is a new map")

	now = now.Add(16 * time.Second)
	require.False(t, r.List()[0].Healthy, "late past half the TTL")
}

func TestEmbeddedRelayShowsLocalStats(t *testing.T) {
	static := []roomnet.Relay{{Embedded: true, RelayHeartbeat: roomnet.RelayHeartbeat{RegionID: 900, RegionCode: "local",
		Node: roomnet.RelayNode{Name: "900a", HostName: "127.0.0.1", DERPPort: 8443}}}}
	r, err := New(static, 30*time.Second, func(*tailcfg.DERPMap) error { return nil })
	require.NoError(t, err)
	defer r.Close()
	r.SetLocalStats(func() roomnet.RelayStats { return roomnet.RelayStats{Clients: 7} })
	l := r.List()
	require.True(t, l[0].Healthy)
	require.Equal(t, 7, l[0].Stats.Clients)
	require.Nil(t, static[0].Stats, "the static entry itself is not changed")
}

// Headscale gets one DERP node per region, never a STUN-only one, and the
// same node while it is healthy: a relay joining the region (even one
// whose name sorts first) changes nothing a node sees; the serving relay
// missing its heartbeats for half the TTL hands the region to a healthy
// one, which keeps it when the first comes back.
func TestControlMapHasOneStableNodePerRegion(t *testing.T) {
	var mu sync.Mutex
	var last *tailcfg.DERPMap
	static := []roomnet.Relay{
		{Embedded: true, RelayHeartbeat: roomnet.RelayHeartbeat{RegionID: 900, RegionCode: "home", Node: roomnet.RelayNode{Name: "900b", HostName: "127.0.0.1", DERPPort: 443, STUNPort: 3478}}},
		{Embedded: true, RelayHeartbeat: roomnet.RelayHeartbeat{RegionID: 900, RegionCode: "home", Node: roomnet.RelayNode{Name: "900a", HostName: "127.0.0.1", STUNPort: 3479, STUNOnly: true}}},
	}
	r, err := New(static, 2*time.Second, func(m *tailcfg.DERPMap) error { mu.Lock(); last = m; mu.Unlock(); return nil })
	require.NoError(t, err)
	defer r.Close()
	var now atomic.Int64 // read by the sweeper
	now.Store(time.Unix(5000, 0).UnixNano())
	r.now = func() time.Time { return time.Unix(0, now.Load()) }
	served := func(region int) []string {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		reg := last.Regions[region]
		if reg == nil {
			return nil
		}
		var names []string
		for _, n := range reg.Nodes {
			names = append(names, n.Name)
		}
		return names
	}
	require.Equal(t, []string{"900b"}, served(900), "the STUN-only node is left out")
	require.Len(t, r.Map().Regions[900].Nodes, 2, "the whole map keeps it")

	hb := func(name string) roomnet.RelayHeartbeat {
		return roomnet.RelayHeartbeat{RegionID: 901, RegionCode: "eu", Node: roomnet.RelayNode{Name: name, HostName: name + ".example.com", DERPPort: 443}}
	}
	require.NoError(t, r.Heartbeat(hb("901m")))
	require.Equal(t, []string{"901m"}, served(901))
	require.NoError(t, r.Heartbeat(hb("901a"))) // sorts first
	require.Equal(t, []string{"901m"}, served(901), "a joining relay does not take the region over")
	require.Equal(t, []string{"900b"}, served(900))
	require.Len(t, r.Map().Regions[901].Nodes, 2)

	// 901m goes quiet; 901a keeps heartbeating; the sweep drops 901m.
	now.Add(int64(1500 * time.Millisecond))
	require.NoError(t, r.Heartbeat(hb("901a")))
	require.Eventually(t, func() bool {
		s := served(901)
		return len(s) == 1 && s[0] == "901a"
	}, 10*time.Second, 10*time.Millisecond, "a primary late past half the TTL hands the region to a healthy relay before it leaves the map")
	require.Len(t, r.Map().Regions[901].Nodes, 2, "901m is late, not gone")
	now.Add(int64(1500 * time.Millisecond))
	require.NoError(t, r.Heartbeat(hb("901a")))
	require.NoError(t, r.Heartbeat(hb("901m"))) // back: 901a keeps the region
	time.Sleep(time.Second)                     // two sweeps
	require.Equal(t, []string{"901a"}, served(901), "a relay coming back does not take the region over")
}

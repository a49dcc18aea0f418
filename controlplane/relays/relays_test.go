package relays

import (
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

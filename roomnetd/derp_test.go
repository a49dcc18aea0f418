package roomnetd_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/client/local"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/roomnet/roomnet/derp/relay"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnettest"
)

func derpClient(t *testing.T, k key.NodePrivate, r *relay.Server) *derphttp.Client {
	t.Helper()
	c := r.Client(k, t.Logf)
	t.Cleanup(func() { c.Close() })
	return c
}

// memberOnRelay brings a member's node up with grant and waits until it
// is connected to the embedded relay; it returns the node's local client
// and key.
func memberOnRelay(t *testing.T, ctx context.Context, h *roomnettest.Harness, grant roomnet.JoinGrant) (*local.Client, key.NodePublic) {
	t.Helper()
	n := roomnettest.Node(t, grant, "member")
	lc, err := n.Tsnet().LocalClient()
	require.NoError(t, err)
	st, err := lc.Status(ctx)
	require.NoError(t, err)
	eventually(t, 15*time.Second, "the member's node connected to the relay", func() error {
		if !h.Server.Relay().Connected(st.Self.PublicKey) {
			return fmt.Errorf("not connected")
		}
		return nil
	})
	return lc, st.Self.PublicKey
}

// The relay admits only nodes Headscale knows: a stranger's key is
// refused, a room member's node is connected.
func TestRelayRefusesUnknownNodeKeys(t *testing.T) {
	h := roomnettest.New(t)
	alice := h.User("alice")
	room := createRoom(t, alice, "admission", 2)
	ctx := roomnettest.Context(t, 30*time.Second)
	_, _ = memberOnRelay(t, ctx, h, room.Join)
	r := h.Server.Relay()

	stranger := key.NewNode()
	c := derpClient(t, stranger, r)
	_ = c.Connect(ctx) // the handshake may complete before the verdict
	recvErr := make(chan error, 1)
	go func() { _, err := c.Recv(); recvErr <- err }()
	select {
	case err := <-recvErr:
		require.Error(t, err, "the relay must close an unknown node's connection")
	case <-ctx.Done():
		t.Fatal("the relay kept an unknown node's connection open")
	}
	require.False(t, r.Connected(stranger.Public()), "an unknown node key was admitted")
}

// A standalone relay that heartbeats joins the DERP map Headscale hands to
// nodes; when it stops, it leaves the map.
func TestStandaloneRelayJoinsAndLeavesTheMap(t *testing.T) {
	const token = "relay-token-for-tests"
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.DERP.RelayToken = token
		s.Config.DERP.RelayTTL = 2 * time.Second
		s.Config.DERP.MapRefresh = time.Second
	})
	alice := h.User("alice")
	room := createRoom(t, alice, "map", 2)
	n := roomnettest.Node(t, room.Join, "member")
	ctx := roomnettest.Context(t, 60*time.Second)

	// Wrong token, bad heartbeats: refused.
	hb := roomnet.RelayHeartbeat{RegionID: 901, RegionCode: "eu", RegionName: "Europe", Node: roomnet.RelayNode{Name: "901a", HostName: "127.0.0.1", DERPPort: 443}}
	requireCode(t, roomnet.NewClient(h.URL).WithToken("wrong-token-wrong-token").RelayHeartbeat(ctx, hb), 401, roomnet.CodeUnauthorized)
	requireCode(t, alice.RelayHeartbeat(ctx, hb), 401, roomnet.CodeUnauthorized)
	bad := hb
	bad.Node.DERPPort = 0
	requireCode(t, roomnet.NewClient(h.URL).WithToken(token).RelayHeartbeat(ctx, bad), 400, roomnet.CodeBadRequest)
	taken := hb
	taken.Node.Name = "900a"
	requireCode(t, roomnet.NewClient(h.URL).WithToken(token).RelayHeartbeat(ctx, taken), 400, roomnet.CodeBadRequest)

	r, err := relay.Start(relay.Options{
		Listen: "127.0.0.1:0", STUNListen: "127.0.0.1:0", StateDir: filepath.Join(t.TempDir(), "relay"),
		VerifyURL: room.Join.LoginServer + "/verify", Logger: roomnettest.Logger(),
	})
	require.NoError(t, err)
	defer r.Close()
	regCtx, stopHeartbeats := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		r.Register(regCtx, roomnet.NewClient(h.URL).WithToken(token), relay.Heartbeat{RegionID: 901, RegionCode: "eu", RegionName: "Europe", NodeName: "901a"}, 300*time.Millisecond)
		close(done)
	}()

	lc, err := n.Tsnet().LocalClient()
	require.NoError(t, err)
	regions := func() (map[int]bool, error) {
		m, err := lc.CurrentDERPMap(ctx)
		if err != nil {
			return nil, err
		}
		out := map[int]bool{}
		for id := range m.Regions {
			out[id] = true
		}
		return out, nil
	}
	eventually(t, 20*time.Second, "the node's DERP map gains region 901", func() error {
		got, err := regions()
		if err != nil || !got[901] || !got[900] {
			return fmt.Errorf("regions %v %v", got, err)
		}
		return nil
	})
	relays, err := h.Admin.Relays(ctx)
	require.NoError(t, err)
	require.Len(t, relays, 2)
	_, err = alice.Relays(ctx)
	requireCode(t, err, 403, roomnet.CodeForbidden)

	stopHeartbeats()
	<-done
	eventually(t, 20*time.Second, "the silent relay leaves the node's DERP map", func() error {
		got, err := regions()
		if err != nil || got[901] || !got[900] {
			return fmt.Errorf("regions %v %v", got, err)
		}
		return nil
	})
}

// Two relays of one region mesh: a client on one reaches a client on the other.
func TestRelaysMeshAcrossARegion(t *testing.T) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	meshKey := hex.EncodeToString(raw)
	r2, err := relay.Start(relay.Options{Listen: "127.0.0.1:0", StateDir: filepath.Join(t.TempDir(), "r2"), MeshKey: meshKey, Logger: roomnettest.Logger()})
	require.NoError(t, err)
	t.Cleanup(func() { r2.Close() })
	r1, err := relay.Start(relay.Options{Listen: "127.0.0.1:0", StateDir: filepath.Join(t.TempDir(), "r1"), MeshKey: meshKey, Logger: roomnettest.Logger(),
		MeshWith: []string{fmt.Sprintf("https://%s/derp", r2.Addr())}, MeshInsecure: true})
	require.NoError(t, err)
	t.Cleanup(func() { r1.Close() })

	ctx := roomnettest.Context(t, 30*time.Second)
	ka, kb := key.NewNode(), key.NewNode()
	a := derpClient(t, ka, r1)
	b := derpClient(t, kb, r2)
	require.NoError(t, a.Connect(ctx))
	require.NoError(t, b.Connect(ctx))
	got := make(chan string, 1)
	go func() {
		for {
			m, err := b.Recv()
			if err != nil {
				return
			}
			if p, ok := m.(derp.ReceivedPacket); ok && p.Source == ka.Public() {
				got <- string(p.Data)
				return
			}
		}
	}()
	// r1 learns of b through its mesh watch of r2; resend until it has.
	for {
		require.NoError(t, a.Send(kb.Public(), []byte("across the mesh")))
		select {
		case msg := <-got:
			require.Equal(t, "across the mesh", msg)
			return
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("packet never crossed the mesh")
		}
	}
}

// Without the mesh key a relay refuses to mesh.
func TestMeshNeedsAKey(t *testing.T) {
	_, err := relay.Start(relay.Options{Listen: "127.0.0.1:0", StateDir: t.TempDir(), Logger: roomnettest.Logger(), MeshWith: []string{"https://127.0.0.1:1/derp"}})
	require.ErrorContains(t, err, "mesh key")
}

// When a region's relay dies, members fail over to another region's relay
// and keep reaching each other.
func TestMembersFailOverToAnotherRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for netcheck to move the home relay")
	}
	const token = "relay-token-for-tests"
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.DERP.RelayToken = token
		s.Config.DERP.MapRefresh = time.Second
		s.Config.DERP.RelayTTL = 2 * time.Second
	})
	ctx := roomnettest.Context(t, 3*time.Minute)
	r, err := relay.Start(relay.Options{
		Listen: "127.0.0.1:0", STUNListen: "127.0.0.1:0", StateDir: filepath.Join(t.TempDir(), "relay"),
		Logger: roomnettest.Logger(),
	})
	require.NoError(t, err)
	defer r.Close()
	regCtx, stopHeartbeats := context.WithCancel(ctx)
	defer stopHeartbeats()
	go r.Register(regCtx, roomnet.NewClient(h.URL).WithToken(token), relay.Heartbeat{RegionID: 901, RegionCode: "backup", RegionName: "Backup", NodeName: "901a"}, 300*time.Millisecond)

	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "failover", 2)
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	serveEcho(t, host, 7777)
	for _, n := range []*node.Node{host, player} {
		lc, err := n.Tsnet().LocalClient()
		require.NoError(t, err)
		eventually(t, 30*time.Second, "region 901 in the node's map", func() error {
			m, err := lc.CurrentDERPMap(ctx)
			if err != nil || m.Regions[901] == nil {
				return fmt.Errorf("no region 901 yet: %v", err)
			}
			return nil
		})
	}
	eventually(t, 30*time.Second, "members reach each other", func() error {
		return tcpEcho(roomnettest.Context(t, 5*time.Second), player, host.IP(), 7777, "before")
	})

	// Kill whichever relay the members use now.
	peers, err := player.Peers(ctx)
	require.NoError(t, err)
	using, other := peers[0].Relay, "backup"
	switch using {
	case h.Config.DERP.RegionCode:
		require.NoError(t, h.Server.Relay().Close())
	case "backup":
		other = h.Config.DERP.RegionCode
		stopHeartbeats()
		require.NoError(t, r.Close())
	default:
		t.Fatalf("members use relay %q", using)
	}
	failed := time.Now()
	eventually(t, 150*time.Second, "members reach each other through the other region", func() error {
		if err := tcpEcho(roomnettest.Context(t, 3*time.Second), player, host.IP(), 7777, "after"); err != nil {
			return err
		}
		peers, err := player.Peers(ctx)
		if err != nil || peers[0].Relay != other {
			return fmt.Errorf("still on %v (%v)", peers, err)
		}
		return nil
	})
	t.Logf("failed over from %s to %s in %s", using, other, time.Since(failed).Round(time.Second))
}

// relayAccepts reads the relay's count of accepted DERP connections from
// roomnetd's metrics.
func relayAccepts(t *testing.T, h *roomnettest.Harness) float64 {
	t.Helper()
	resp, err := http.Get(h.Server.MetricsURL())
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, `roomnet_derp_stat{name="accepts"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no roomnet_derp_stat accepts in the metrics")
	return 0
}

// Headscale re-reads the DERP map every derp.map_refresh and shuffles each
// region's nodes anew, and tailscale drops its connection to a region
// whose definition changed (order included). With the STUN-only node
// beside the relay, a region of two nodes, every node reconnected every
// few refreshes. Headscale now gets one node per region: over ten
// refreshes a connected node keeps its one connection, while the API's
// map still lists the STUN-only node for `roomnet doctor`.
func TestNodesKeepTheirRelayConnectionAcrossMapRefreshes(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.DERP.STUNAltListen = "127.0.0.1:0"
		s.Config.DERP.MapRefresh = time.Second
		s.Config.Metrics.Listen = "127.0.0.1:0"
	})
	alice := h.User("alice")
	room := createRoom(t, alice, "refresh", 2)
	ctx := roomnettest.Context(t, 60*time.Second)
	lc, self := memberOnRelay(t, ctx, h, room.Join)
	r := h.Server.Relay()
	dm, err := lc.CurrentDERPMap(ctx)
	require.NoError(t, err)
	region := dm.Regions[h.Config.DERP.RegionID]
	require.NotNil(t, region, "the node's map has the relay's region")
	require.Len(t, region.Nodes, 1, "the node's map has one node in the region: %+v", region.Nodes)
	require.False(t, region.Nodes[0].STUNOnly)

	before := relayAccepts(t, h)
	time.Sleep(10 * h.Config.DERP.MapRefresh) // ten refreshes by Headscale
	require.Equal(t, before, relayAccepts(t, h), "the node reconnected to the relay while the map did not change")
	require.True(t, r.Connected(self))

	resp, err := http.Get(h.URL + "/api/v1/derpmap")
	require.NoError(t, err)
	defer resp.Body.Close()
	var full tailcfg.DERPMap
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&full))
	stunOnly := 0
	for _, n := range full.Regions[h.Config.DERP.RegionID].Nodes {
		if n.STUNOnly {
			stunOnly++
		}
	}
	require.Equal(t, 1, stunOnly, "the API's map lists the STUN-only node")
}

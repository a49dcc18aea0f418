package roomnetd_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/controlplane/headscale/embedded"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/derp"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnetd"
	"github.com/roomnet/roomnet/roomnettest"
)

func nodeKey(t *testing.T, n *node.Node) key.NodePublic {
	t.Helper()
	lc, err := n.Tsnet().LocalClient()
	require.NoError(t, err)
	st, err := lc.Status(roomnettest.Context(t, 10*time.Second))
	require.NoError(t, err)
	return st.Self.PublicKey
}

// admit asks roomnetd's /verify, as a standalone relay does.
func admit(t *testing.T, h *roomnettest.Harness, k key.NodePublic) bool {
	t.Helper()
	body, _ := json.Marshal(tailcfg.DERPAdmitClientRequest{NodePublic: k, Source: netip.MustParseAddr("127.0.0.1")})
	resp, err := http.Post(h.URL+"/verify", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var ans tailcfg.DERPAdmitClientResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
	return ans.Allow
}

// Two embedded Headscale children: rooms spread over both; members of a
// room on either shard reach each other through the relay, which admits
// the nodes of both; nobody reaches another shard's room; a shard at its
// node cap takes no new rooms (503 capacity) but its rooms take members.
func TestRoomsSpreadOverTwoEmbeddedShards(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Headscale.Shards = 2
		s.Config.Headscale.ShardNodeCap = 2
	})
	ctx := roomnettest.Context(t, 120*time.Second)
	sups := h.Server.Shards()
	require.Len(t, sups, 2)
	require.NotEqual(t, sups[0].PID(), sups[1].PID())
	for i, dir := range []string{"headscale", "headscale-1"} {
		_, err := os.Stat(filepath.Join(h.Config.DataDir, dir, "headscale.db"))
		require.NoError(t, err, "shard %d's database", i)
		policy, err := sups[i].Client().GetPolicy(ctx)
		require.NoError(t, err)
		require.Equal(t, service.IsolationPolicy, strings.TrimSpace(policy), "shard %d's policy", i)
	}

	alice, bob, carol, dave := h.User("alice"), h.User("bob"), h.User("carol"), h.User("dave")
	roomA := createRoom(t, alice, "on shard 0", 4)
	roomB := createRoom(t, carol, "on shard 1", 4)
	require.NotEqual(t, roomA.Join.LoginServer, roomB.Join.LoginServer, "the rooms are on different shards")
	aHost := roomnettest.Node(t, roomA.Join, "a-host")
	aPlayer := roomnettest.Node(t, join(t, bob, roomA.ID), "a-player")
	bHost := roomnettest.Node(t, roomB.Join, "b-host")
	bPlayer := roomnettest.Node(t, join(t, dave, roomB.ID), "b-player")
	serveEcho(t, aHost, 7777)
	serveEcho(t, bHost, 7777)
	bOnly := 7778 // served only by room B's host
	serveEcho(t, bHost, uint16(bOnly))

	// Members of each room reach each other, through the relay.
	eventually(t, 30*time.Second, "room A's player reaches its host", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), aPlayer, aHost.IP(), 7777, "shard 0")
	})
	eventually(t, 30*time.Second, "room B's player reaches its host", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), bPlayer, bHost.IP(), 7777, "shard 1")
	})
	require.NoError(t, udpEcho(roomnettest.Context(t, 15*time.Second), bPlayer, bHost.IP(), 7777, "udp on shard 1"))
	peers, err := bPlayer.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	require.False(t, peers[0].Direct, "path must be relayed")

	// The shards are separate networks: their addresses may even be the
	// same, but room A's player never sees room B's host and never
	// reaches what only it serves.
	bHostKey := nodeKey(t, bHost)
	lc, err := aPlayer.Tsnet().LocalClient()
	require.NoError(t, err)
	st, err := lc.Status(ctx)
	require.NoError(t, err)
	require.NotContains(t, st.Peer, bHostKey, "a shard 0 node has a shard 1 node as a peer")
	require.Error(t, tcpEcho(roomnettest.Context(t, 5*time.Second), aPlayer, bHost.IP(), uint16(bOnly), "across shards"))

	// The relay admits the nodes of both shards (asking roomnetd's
	// /verify, which asks every shard) and refuses a stranger.
	r := h.Server.Relay()
	for _, n := range []*node.Node{aHost, aPlayer, bHost, bPlayer} {
		k := nodeKey(t, n)
		eventually(t, 10*time.Second, "node connected to the relay", func() error {
			if !r.Connected(k) {
				return fmt.Errorf("%s not connected", k.ShortString())
			}
			return nil
		})
		require.True(t, admit(t, h, k))
	}
	stranger := key.NewNode()
	require.False(t, admit(t, h, stranger.Public()))
	c := derpClient(t, stranger, r)
	_ = c.Connect(ctx)
	recvErr := make(chan error, 1)
	go func() { _, err := c.Recv(); recvErr <- err }()
	select {
	case err := <-recvErr:
		require.Error(t, err, "the relay must close an unknown node's connection")
	case <-ctx.Done():
		t.Fatal("the relay kept an unknown node's connection open")
	}

	// Both shards hold two nodes, their cap: once the health loop has
	// counted them, a new room is refused, a join to a room is not.
	var shards []roomnet.Shard
	eventually(t, 20*time.Second, "the health loop counts every node", func() error {
		shards, err = h.Admin.Shards(ctx)
		if err != nil {
			return err
		}
		for _, s := range shards {
			if s.Nodes != 2 {
				return fmt.Errorf("shard %s: %d nodes", s.Name, s.Nodes)
			}
		}
		return nil
	})
	require.Len(t, shards, 2)
	for i, s := range shards {
		require.Equal(t, []string{"default", "hs-1"}[i], s.Name)
		require.Equal(t, "embedded", s.Kind)
		require.True(t, s.Healthy)
		require.Empty(t, s.LastError)
		require.NotNil(t, s.CheckedAt)
		require.Equal(t, 1, s.Rooms)
		require.Equal(t, 2, s.NodeCap)
		// The version comes from the binary's build info, which test
		// binaries do not carry; cmd/roomnetd reports v0.29.3.
		require.NotNil(t, s.Process)
		require.Equal(t, sups[i].PID(), s.Process.PID)
		require.Greater(t, s.Process.RSSBytes, int64(1<<20))
		require.Greater(t, s.Process.CPUSeconds, 0.0)
	}
	_, err = alice.Shards(ctx)
	requireCode(t, err, 403, roomnet.CodeForbidden)

	_, err = h.User("erin").CreateRoom(ctx, roomnet.CreateRoom{Name: "no room left", MaxPlayers: 4, Public: true})
	requireCode(t, err, 503, roomnet.CodeCapacity)
	g, err := h.User("frank").Join(ctx, roomB.ID, "")
	require.NoError(t, err, "a join to a room on a full shard")
	require.Equal(t, roomB.Join.LoginServer, g.LoginServer)
}

// externalHeadscale runs a Headscale outside roomnetd (a supervised child
// the test owns, reading the DERP map file it is given) and exposes its
// gRPC API on a TCP address, the way an external server is reached. It
// returns the gRPC address and the login server URL.
func externalHeadscale(t *testing.T, mapPath string) (grpcAddr, serverURL string) {
	t.Helper()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listen := free.Addr().String()
	free.Close()
	dir := filepath.Join(t.TempDir(), "headscale")
	sup, err := embedded.Start(roomnettest.Context(t, 60*time.Second), embedded.Options{
		Dir: dir, Listen: listen, ServerURL: "http://" + listen, DERPMapPath: mapPath, DERPMapRefresh: time.Second,
		EphemeralTimeout: 5 * time.Minute, BatchDelay: 100 * time.Millisecond, StoreBatchTimeout: 20 * time.Millisecond,
		Logger: roomnettest.Logger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { sup.Close() })

	// gRPC over TCP, relayed to the child's unix socket.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", embedded.SocketPath(dir))
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().String(), "http://" + listen
}

// An external shard beside the embedded one: rooms are placed on it, its
// members reach each other through the embedded relay (which admits them
// by asking roomnetd's /verify, which asks the external shard's /verify),
// and admins see it as external.
func TestExternalShardBesideTheEmbeddedOne(t *testing.T) {
	mapPath := filepath.Join(t.TempDir(), "derpmap.yaml")
	// A placeholder until roomnetd's relay exists: Headscale refuses an
	// empty map, and re-reads the file every second.
	require.NoError(t, derp.WriteMapFile(mapPath, &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		999: {RegionID: 999, RegionCode: "placeholder", Nodes: []*tailcfg.DERPNode{{Name: "999a", RegionID: 999, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none", DERPPort: 9}}},
	}}))
	grpcAddr, serverURL := externalHeadscale(t, mapPath)
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Headscale.ExternalShards = []config.ExternalShard{{
			Name: "ext-1", Address: grpcAddr, APIKey: "an-api-key", ServerURL: serverURL, Insecure: true,
		}}
	})
	m, err := os.ReadFile(filepath.Join(h.Config.DataDir, "derpmap.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(mapPath, m, 0o600))
	ctx := roomnettest.Context(t, 120*time.Second)

	alice, bob, carol := h.User("alice"), h.User("bob"), h.User("carol")
	onDefault := createRoom(t, alice, "embedded", 4)
	onExternal := createRoom(t, bob, "external", 4)
	require.NotEqual(t, serverURL, onDefault.Join.LoginServer)
	require.Equal(t, serverURL, onExternal.Join.LoginServer, "the second room goes to the emptier shard")

	host := roomnettest.Node(t, onExternal.Join, "ext-host")
	player := roomnettest.Node(t, join(t, carol, onExternal.ID), "ext-player")
	serveEcho(t, host, 7777)
	eventually(t, 45*time.Second, "the external shard's player reaches its host", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), player, host.IP(), 7777, "external")
	})
	peers, err := player.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	require.Equal(t, h.Config.DERP.RegionCode, peers[0].Relay, "relayed by roomnetd's relay")
	for _, n := range []*node.Node{host, player} {
		k := nodeKey(t, n)
		require.True(t, h.Server.Relay().Connected(k))
		require.True(t, admit(t, h, k))
	}

	shards, err := h.Admin.Shards(ctx)
	require.NoError(t, err)
	require.Len(t, shards, 2)
	ext := shards[1]
	require.Equal(t, "ext-1", ext.Name)
	require.Equal(t, "external", ext.Kind)
	require.True(t, ext.Healthy)
	require.Equal(t, 1, ext.Rooms)
	require.Nil(t, ext.Process)
	require.Equal(t, "embedded", shards[0].Kind)
}

// roomnetd does not start when an external shard does not answer, and
// stops the embedded children it started.
func TestStartRefusesAnExternalShardThatDoesNotAnswer(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := dead.Addr().String()
	dead.Close()
	cfg := roomnettest.Config(t.TempDir())
	cfg.Headscale.ExternalShards = []config.ExternalShard{{Name: "gone", Address: addr, APIKey: "k", ServerURL: "http://" + addr, Insecure: true}}
	require.NoError(t, cfg.Finish())
	_, err = roomnetd.Start(roomnettest.Context(t, 60*time.Second), cfg, roomnetd.Options{Logger: roomnettest.Logger(), Out: io.Discard})
	require.ErrorContains(t, err, "external headscale gone")
	// The embedded child was stopped: its socket answers nobody.
	_, err = net.DialTimeout("unix", embedded.SocketPath(filepath.Join(cfg.DataDir, "headscale")), time.Second)
	require.Error(t, err)
}

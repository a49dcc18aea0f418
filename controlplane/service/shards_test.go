package service

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/types/key"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
)

// Admit answers as Headscale's /verify does: whether a node has the key.
func (h *hsDouble) Admit(_ context.Context, nodeKey key.NodePublic, _ netip.Addr) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return false, err
	}
	for _, n := range h.nodes {
		if n.NodeKey == nodeKey.String() {
			return true, nil
		}
	}
	return false, nil
}

// addNodes registers n nodes of no room (another tenant's load) and
// returns the last one's key.
func (h *hsDouble) addNodes(n int) key.NodePublic {
	h.mu.Lock()
	defer h.mu.Unlock()
	var k key.NodePublic
	for range n {
		k = key.NewNode().Public()
		id := h.id()
		h.nodes[id] = headscale.Node{ID: id, Name: fmt.Sprintf("load%d", id), NodeKey: k.String(), Online: true}
	}
	return k
}

// shardFixture is a fixture with several shards, each a double.
func shardFixture(t *testing.T, names []string, opts ...func(*Options)) (*fixture, map[string]*hsDouble) {
	doubles := map[string]*hsDouble{}
	var shards []Shard
	for _, n := range names {
		d := newHSDouble()
		doubles[n] = d
		shards = append(shards, Shard{Name: n, Client: d, LoginServer: "http://" + n, Kind: ShardExternal, Admitter: d})
	}
	f := newFixture(t, sqliteOnly(t), append([]func(*Options){func(o *Options) { o.Shards = shards }}, opts...)...)
	return f, doubles
}

func (f *fixture) shardOf(roomID string) string {
	f.t.Helper()
	r, err := f.st.Room(context.Background(), roomID)
	require.NoError(f.t, err)
	return r.Shard
}

// New rooms go to the shard with the fewest nodes, counting the keys
// minted since the nodes were counted; ties go to fewest open rooms.
func TestNewRoomsGoToTheShardWithFewestNodes(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b", "c"})
	ctx := context.Background()
	host := f.user("host", cp.RolePlayer)
	hs["a"].addNodes(3)
	hs["b"].addNodes(1)
	f.svc.RefreshShards(ctx)

	r1, _ := f.room(host, true, "") // a 3, b 1, c 0
	require.Equal(t, "c", f.shardOf(r1))
	r2, _ := f.room(host, true, "") // a 3, b 1, c 1 (the host's key): b has fewer rooms
	require.Equal(t, "b", f.shardOf(r2))
	r3, _ := f.room(host, true, "") // a 3, b 2, c 1
	require.Equal(t, "c", f.shardOf(r3))

	// A join counts on the room's shard: c 3, b 2.
	guest := f.user("guest", cp.RolePlayer)
	_, _, err := f.svc.JoinRoom(ctx, guest, r3, "")
	require.NoError(t, err)
	r4, _ := f.room(host, true, "")
	require.Equal(t, "b", f.shardOf(r4))

	// A count replaces the keys minted before it: nobody registered, so
	// every shard holds only what it held; c has no nodes again.
	f.svc.RefreshShards(ctx)
	loads := map[string]ShardStatus{}
	for _, l := range f.svc.ShardLoads() {
		loads[l.Name] = l
	}
	require.Equal(t, 3, loads["a"].Nodes)
	require.Equal(t, 0, loads["c"].Nodes+loads["c"].Grants)
	r5, _ := f.room(host, true, "")
	require.Equal(t, "c", f.shardOf(r5))
}

// A shard at its node cap takes no new rooms, but its rooms still take
// members; when every shard is full the answer is ErrCapacity.
func TestShardsAtTheirNodeCapTakeNoNewRooms(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) { o.ShardNodeCap = 2 })
	ctx := context.Background()
	host := f.user("host", cp.RolePlayer)
	hs["a"].addNodes(2)
	f.svc.RefreshShards(ctx)

	r1, _ := f.room(host, true, "")
	require.Equal(t, "b", f.shardOf(r1))
	r2, _ := f.room(host, true, "") // b holds 1, under its cap of 2
	require.Equal(t, "b", f.shardOf(r2))
	_, _, _, err := f.svc.CreateRoom(ctx, host, CreateRoomParams{Name: "one too many", MaxPlayers: 4})
	require.ErrorIs(t, err, cp.ErrCapacity)

	// Members of existing rooms are never refused for the cap.
	for _, name := range []string{"g1", "g2"} {
		_, _, err := f.svc.JoinRoom(ctx, f.user(name, cp.RolePlayer), r1, "")
		require.NoError(t, err, "a join to a room on a full shard")
	}

	// Nodes leave a: it takes rooms again.
	hs["a"].mu.Lock()
	clear(hs["a"].nodes)
	hs["a"].mu.Unlock()
	f.svc.RefreshShards(ctx)
	r3, _ := f.room(host, true, "")
	require.Equal(t, "a", f.shardOf(r3))
}

// An unhealthy shard takes no new rooms while another shard is healthy;
// with none healthy, one is tried all the same (a health check may just
// have been slow), and a shard that is really down answers ErrUnavailable.
func TestUnhealthyShardsTakeNoNewRooms(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"})
	ctx := context.Background()
	host := f.user("host", cp.RolePlayer)
	hs["a"].addNodes(5)
	hs["b"].setDown(true)
	f.svc.RefreshShards(ctx)
	r1, _ := f.room(host, true, "")
	require.Equal(t, "a", f.shardOf(r1), "the emptier shard is down")

	var b ShardStatus
	for _, l := range f.svc.ShardLoads() {
		if l.Name == "b" {
			b = l
		}
	}
	require.True(t, b.Checked)
	require.False(t, b.Healthy)
	require.Contains(t, b.LastError, "connection refused")

	hs["a"].setDown(true)
	f.svc.RefreshShards(ctx)
	_, _, _, err := f.svc.CreateRoom(ctx, host, CreateRoomParams{Name: "nowhere", MaxPlayers: 4})
	require.ErrorIs(t, err, cp.ErrUnavailable)

	// Both marked down, b back before the next check: b (fewer nodes) is
	// tried and takes the room.
	hs["b"].setDown(false)
	r2, _ := f.room(host, true, "")
	require.Equal(t, "b", f.shardOf(r2))

	hs["a"].setDown(false)
	f.svc.RefreshShards(ctx)
	r3, _ := f.room(host, true, "")
	require.Equal(t, "b", f.shardOf(r3), "a has more nodes")
}

// DERP admission asks every healthy shard and admits a node any of them
// knows; when none answers it fails, and relays refuse (fail closed).
func TestAdmitNodeAsksEveryShard(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"})
	ctx := context.Background()
	src := netip.MustParseAddr("127.0.0.1")
	onA, onB := hs["a"].addNodes(1), hs["b"].addNodes(1)
	stranger := key.NewNode().Public()

	for _, k := range []key.NodePublic{onA, onB} {
		ok, err := f.svc.AdmitNode(ctx, k, src)
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, err := f.svc.AdmitNode(ctx, stranger, src)
	require.NoError(t, err)
	require.False(t, ok)

	// a does not answer: b's nodes are still admitted, a's are refused.
	hs["a"].setDown(true)
	ok, err = f.svc.AdmitNode(ctx, onB, src)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = f.svc.AdmitNode(ctx, onA, src)
	require.NoError(t, err)
	require.False(t, ok)

	// Nobody answers: an error, never an admission.
	hs["b"].setDown(true)
	ok, err = f.svc.AdmitNode(ctx, onB, src)
	require.ErrorIs(t, err, cp.ErrUnavailable)
	require.False(t, ok)

	// While a shard passed its check, those the health loop saw down are
	// not asked: b is seen down, then answers again, but a alone is asked.
	hs["a"].setDown(false)
	f.svc.RefreshShards(ctx)
	hs["b"].setDown(false)
	ok, err = f.svc.AdmitNode(ctx, onB, src)
	require.NoError(t, err)
	require.False(t, ok)
	// When none passed, every shard is asked: both are seen down, then b
	// answers again before the next check.
	hs["a"].setDown(true)
	hs["b"].setDown(true)
	f.svc.RefreshShards(ctx)
	hs["b"].setDown(false)
	ok, err = f.svc.AdmitNode(ctx, onB, src)
	require.NoError(t, err)
	require.True(t, ok)
	// And b is asked again once it passes a check.
	hs["a"].setDown(false)
	f.svc.RefreshShards(ctx)
	ok, err = f.svc.AdmitNode(ctx, onB, src)
	require.NoError(t, err)
	require.True(t, ok)
}

// Admins see every shard with its rooms and nodes; players do not.
func TestShardsAreListedForAdmins(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) {
		o.ShardNodeCap = 10
		o.Shards[0].Kind, o.Shards[0].Version = ShardEmbedded, "v0.29.3"
		o.Shards[0].Process = func() (ShardProcess, bool) { return ShardProcess{PID: 42, RSSBytes: 1 << 20}, true }
	})
	ctx := context.Background()
	host := f.user("host", cp.RolePlayer)
	admin := f.user("boss", cp.RoleAdmin)
	hs["a"].addNodes(4)
	f.svc.RefreshShards(ctx)
	f.room(host, true, "")

	_, err := f.svc.Shards(ctx, host)
	require.ErrorIs(t, err, cp.ErrForbidden)
	list, err := f.svc.Shards(ctx, admin)
	require.NoError(t, err)
	require.Len(t, list, 2)
	a, b := list[0], list[1]
	require.Equal(t, "a", a.Name)
	require.Equal(t, ShardEmbedded, a.Kind)
	require.Equal(t, "v0.29.3", a.Version)
	require.Equal(t, 4, a.Nodes)
	require.Equal(t, 4, a.Online)
	require.Equal(t, 0, a.Rooms)
	require.Equal(t, 10, a.NodeCap)
	require.NotNil(t, a.Process)
	require.Equal(t, 42, a.Process.PID)
	require.True(t, a.Healthy)
	require.Equal(t, "b", b.Name)
	require.Equal(t, 1, b.Rooms)
	require.Equal(t, 1, b.Grants)
	require.Nil(t, b.Process)
}

// A shard that does not answer does not keep reconciliation from the
// others: their policy is set and their leftovers removed, and the error
// names the silent shard.
func TestReconcileGoesOnWhenAShardIsDown(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) { o.ReconcileGrace = time.Nanosecond })
	ctx := context.Background()
	_, err := hs["b"].CreateUser(ctx, RoomUserPrefix+"leftover")
	require.NoError(t, err)
	hs["a"].setDown(true)

	rep, err := f.svc.Reconcile(ctx)
	require.ErrorContains(t, err, "shard a")
	require.NotContains(t, err.Error(), "shard b")
	require.True(t, rep.PolicySet)
	require.Equal(t, 1, rep.Users)
	policy, err := hs["b"].GetPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, IsolationPolicy, policy)
	users, err := hs["b"].ListUsers(ctx)
	require.NoError(t, err)
	require.Empty(t, users)
}

// rooms.peer_relays off: reconciliation keeps the policy without the
// relay grant on every shard, and replaces the one with it.
func TestReconcileSetsThePolicyWithoutPeerRelays(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) { o.NoPeerRelays = true })
	ctx := context.Background()
	require.NoError(t, hs["a"].SetPolicy(ctx, IsolationPolicy)) // as a previous start left it
	rep, err := f.svc.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, rep.PolicySet)
	for name, h := range hs {
		policy, err := h.GetPolicy(ctx)
		require.NoError(t, err)
		require.Equal(t, IsolationPolicyNoPeerRelays, policy, "shard %s", name)
	}
	rep, err = f.svc.Reconcile(ctx)
	require.NoError(t, err)
	require.False(t, rep.PolicySet, "an unchanged policy is not set again")
}

package service

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/lease"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// noteBus hands every note to every service, the sender included, as the
// Redis channel does.
type noteBus struct {
	mu   sync.Mutex
	svcs []*Service
	sent []ShardNote
}

func (b *noteBus) NotifyShard(n ShardNote) {
	b.mu.Lock()
	b.sent = append(b.sent, n)
	svcs := append([]*Service(nil), b.svcs...)
	b.mu.Unlock()
	for _, s := range svcs {
		s.ApplyShardNote(n)
	}
}

func (b *noteBus) count(state string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, x := range b.sent {
		if x.State == state {
			n++
		}
	}
	return n
}

// Two services on one PostgreSQL and the same two shards, each with the
// reconciler's lease: when shard b is lost, both find it lost but only
// the lease's holder moves its rooms (one move, one room_moved event) and,
// when b returns, reconciles it; the other node mints keys on the room's
// new shard (the row), keeps b quarantined without reconciling it, takes
// no room there, and opens it again when the holder says b is reconciled.
func TestOnlyTheLeaseHolderMovesALostShardsRooms(t *testing.T) {
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("PostgreSQL not configured (%s unset)", dbtest.EnvPostgres)
	}
	hs := map[string]*hsDouble{"a": newHSDouble(), "b": newHSDouble()}
	shards := []Shard{
		{Name: "a", Client: hs["a"], LoginServer: "http://a", Kind: ShardExternal, Admitter: hs["a"]},
		{Name: "b", Client: hs["b"], LoginServer: "http://b", Kind: ShardExternal, Admitter: hs["b"]},
	}
	bus := &noteBus{}
	var leases []*lease.Postgres
	node := func() *fixture {
		db, err := sql.Open("pgx", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		l := lease.NewPostgres(db, "reconciler", nil)
		leases = append(leases, l)
		f := newFixture(t, dbtest.Engine{Name: "postgres", Driver: "postgres", DSN: dsn}, func(o *Options) {
			o.Shards, o.Lease, o.ShardGrace = shards, l, 100*time.Millisecond
		})
		f.svc.SetShardNotifier(bus)
		bus.mu.Lock()
		bus.svcs = append(bus.svcs, f.svc)
		bus.mu.Unlock()
		return f
	}
	holder, other := node(), node()
	ctx := context.Background()
	held, err := leases[0].TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, held)
	t.Cleanup(func() { leases[0].Release(context.Background()) })

	host, bob := holder.user("host", cp.RolePlayer), holder.user("bob", cp.RolePlayer)
	hs["a"].addNodes(3)
	holder.svc.RefreshShards(ctx)
	other.svc.RefreshShards(ctx)
	moving, hostGrant := holder.room(host, true, "")
	require.Equal(t, "b", holder.shardOf(moving))
	bobGrant, _, err := other.svc.JoinRoom(ctx, bob, moving, "")
	require.NoError(t, err)
	_, err = hs["b"].register(hostGrant.AuthKey)
	require.NoError(t, err)
	stale, err := hs["b"].register(bobGrant.AuthKey)
	require.NoError(t, err)

	// b goes down; both nodes find it lost, only the holder moves.
	hs["b"].setDown(true)
	holder.svc.shardRound(ctx)
	other.svc.shardRound(ctx)
	time.Sleep(150 * time.Millisecond) // past ShardGrace
	other.svc.shardRound(ctx)
	require.Equal(t, "b", holder.shardOf(moving), "the node without the lease moves nothing")
	require.Zero(t, other.svc.RoomsMoved())
	require.Zero(t, bus.count(ShardNoteLost), "the node without the lease says nothing")
	holder.svc.shardRound(ctx)
	require.Equal(t, "a", holder.shardOf(moving))
	require.Equal(t, uint64(1), holder.svc.RoomsMoved())
	require.Contains(t, holder.pub.types(moving), "room_moved ")
	require.NotContains(t, other.pub.types(moving), "room_moved ", "one move, one event")
	require.Positive(t, bus.count(ShardNoteLost))
	other.svc.shardRound(ctx)
	require.Equal(t, uint64(0), other.svc.RoomsMoved())
	g, err := other.svc.RenewKey(ctx, bob, moving)
	require.NoError(t, err)
	require.Equal(t, "http://a", g.LoginServer, "the other node mints on the room's new shard: it reads the row")

	// b returns. The other node quarantines it (it was told) and does
	// not reconcile it; the holder does, and then both open it again.
	hs["b"].setDown(false)
	other.svc.shardRound(ctx)
	require.True(t, other.shardStatus("b").Quarantined)
	_, ok := hs["b"].node(stale.ID)
	require.True(t, ok, "the node without the lease does not reconcile")
	hs["a"].addNodes(50)
	other.svc.RefreshShards(ctx)
	r, _ := other.room(host, true, "")
	require.Equal(t, "a", other.shardOf(r), "a quarantined shard takes no new room on the other node either")

	holder.svc.shardRound(ctx)
	require.False(t, holder.shardStatus("b").Quarantined)
	_, ok = hs["b"].node(stale.ID)
	require.False(t, ok, "the holder reconciled b: the moved room's node is gone")
	hs["b"].mu.Lock()
	for _, u := range hs["b"].users {
		require.False(t, strings.Contains(u.Name, moving), "the moved room's user on b is deleted: %s", u.Name)
	}
	hs["b"].mu.Unlock()
	require.Equal(t, 1, bus.count(ShardNoteReconciled))
	require.False(t, other.shardStatus("b").Quarantined, "the other node heard that b is reconciled")
	r2, _ := other.room(bob, true, "")
	require.Equal(t, "b", other.shardOf(r2))
}

// A node that found a shard lost by itself while the holder did not
// (the holder's view stayed healthy) lifts its quarantine once the shard
// has been healthy for the grace without a note saying it is lost.
func TestAQuarantineNobodyConfirmsIsLifted(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) {
		o.ShardGrace = 50 * time.Millisecond
		o.Lease = neverHeld{}
	})
	ctx := context.Background()
	hs["b"].setDown(true)
	f.svc.shardRound(ctx)
	time.Sleep(60 * time.Millisecond)
	f.svc.shardRound(ctx)
	hs["b"].setDown(false)
	f.svc.shardRound(ctx)
	require.True(t, f.shardStatus("b").Quarantined, "not at once")
	f.svc.ApplyShardNote(ShardNote{Shard: "b", State: ShardNoteLost}) // the holder says so after all
	time.Sleep(60 * time.Millisecond)
	f.svc.ApplyShardNote(ShardNote{Shard: "b", State: ShardNoteLost})
	f.svc.shardRound(ctx)
	require.True(t, f.shardStatus("b").Quarantined, "kept while the holder keeps calling it lost")
	time.Sleep(60 * time.Millisecond)
	f.svc.shardRound(ctx)
	require.False(t, f.shardStatus("b").Quarantined)
}

// neverHeld is a lease another node holds.
type neverHeld struct{}

func (neverHeld) TryAcquire(context.Context) (bool, error) { return false, nil }
func (neverHeld) Release(context.Context) error            { return nil }

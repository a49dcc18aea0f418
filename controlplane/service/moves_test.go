package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
)

func (f *fixture) shardStatus(name string) ShardStatus {
	f.t.Helper()
	for _, l := range f.svc.ShardLoads() {
		if l.Name == name {
			return l
		}
	}
	f.t.Fatalf("no shard %s", name)
	return ShardStatus{}
}

// A shard down past the grace loses its rooms to a healthy shard: new
// Headscale user there, members kept, room_moved published, keys minted
// there. Back, it is quarantined until reconciled, which removes the
// moved rooms' users and nodes; then it takes rooms again.
func TestLostShardRoomsMoveAndItComesBackQuarantined(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) { o.ShardGrace = 100 * time.Millisecond })
	ctx := context.Background()
	host, bob := f.user("host", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	hs["a"].addNodes(3) // b is emptier: the rooms go there
	f.svc.RefreshShards(ctx)
	moving, hostGrant := f.room(host, true, "")
	require.Equal(t, "b", f.shardOf(moving))
	bobGrant, _, err := f.svc.JoinRoom(ctx, bob, moving, "")
	require.NoError(t, err)
	_, err = hs["b"].register(hostGrant.AuthKey)
	require.NoError(t, err)
	stale, err := hs["b"].register(bobGrant.AuthKey)
	require.NoError(t, err)
	hs["b"].addNodes(10) // now a is emptier
	f.svc.RefreshShards(ctx)
	staying, _ := f.room(bob, true, "")
	require.Equal(t, "a", f.shardOf(staying))

	hs["b"].setDown(true)
	f.svc.shardRound(ctx)
	require.Equal(t, "b", f.shardOf(moving), "not before the grace")
	require.NotContains(t, f.pub.types(moving), "room_moved ")
	time.Sleep(150 * time.Millisecond)
	f.svc.shardRound(ctx)

	room, err := f.st.Room(ctx, moving)
	require.NoError(t, err)
	require.Equal(t, "a", room.Shard)
	require.True(t, strings.HasPrefix(room.HeadscaleUser, RoomUserPrefix+moving+"-"), room.HeadscaleUser)
	hs["a"].mu.Lock()
	require.Equal(t, room.HeadscaleUser, hs["a"].users[room.HeadscaleUserID].Name)
	hs["a"].mu.Unlock()
	require.Contains(t, f.pub.types(moving), "room_moved ")
	require.NotContains(t, f.pub.types(staying), "room_moved ")
	require.Equal(t, uint64(1), f.svc.RoomsMoved())
	ms, err := f.svc.Members(ctx, host, moving)
	require.NoError(t, err)
	require.Len(t, ms, 2, "memberships are kept")

	g, err := f.svc.RenewKey(ctx, bob, moving)
	require.NoError(t, err)
	require.Equal(t, "http://a", g.LoginServer)
	_, err = hs["a"].register(g.AuthKey)
	require.NoError(t, err)
	f.svc.shardRound(ctx) // nothing left to move
	require.Equal(t, uint64(1), f.svc.RoomsMoved())

	// b comes back: quarantined, no new room, reconciled, then open.
	hs["b"].setDown(false)
	f.svc.RefreshShards(ctx)
	require.True(t, f.shardStatus("b").Quarantined)
	hs["a"].addNodes(50)
	f.svc.RefreshShards(ctx)
	r, _ := f.room(host, true, "")
	require.Equal(t, "a", f.shardOf(r), "a quarantined shard takes no new room")
	f.svc.reconcileReturned(ctx)
	require.False(t, f.shardStatus("b").Quarantined)
	_, ok := hs["b"].node(stale.ID)
	require.False(t, ok, "the moved room's node on b is deleted")
	hs["b"].mu.Lock()
	for _, u := range hs["b"].users {
		require.False(t, strings.Contains(u.Name, moving), "the moved room's user on b is deleted: %s", u.Name)
	}
	hs["b"].mu.Unlock()
	hs["b"].setDown(false)
	f.svc.RefreshShards(ctx)
	r2, _ := f.room(bob, true, "")
	require.Equal(t, "b", f.shardOf(r2), "reconciled, b takes rooms again")
}

// With one shard nothing moves, however long it is down.
func TestOneShardNeverMoves(t *testing.T) {
	f := newFixture(t, sqliteOnly(t), func(o *Options) { o.ShardGrace = time.Millisecond })
	ctx := context.Background()
	host := f.user("host", cp.RolePlayer)
	id, _ := f.room(host, true, "")
	f.hs.setDown(true)
	f.svc.shardRound(ctx)
	time.Sleep(5 * time.Millisecond)
	f.svc.shardRound(ctx)
	require.Equal(t, "default", f.shardOf(id))
	require.NotContains(t, f.pub.types(id), "room_moved ")
	f.hs.setDown(false)
	f.svc.shardRound(ctx)
	require.False(t, f.shardStatus("default").Quarantined)
}

// When no other shard is healthy, the rooms wait on the lost one and
// move as soon as another answers.
func TestLostShardWaitsForAHealthyOne(t *testing.T) {
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) { o.ShardGrace = time.Millisecond })
	ctx := context.Background()
	host := f.user("host", cp.RolePlayer)
	hs["a"].addNodes(3)
	f.svc.RefreshShards(ctx)
	id, _ := f.room(host, true, "")
	require.Equal(t, "b", f.shardOf(id))
	hs["a"].setDown(true)
	hs["b"].setDown(true)
	f.svc.shardRound(ctx)
	time.Sleep(5 * time.Millisecond)
	f.svc.shardRound(ctx)
	require.Equal(t, "b", f.shardOf(id))
	_, _, _, err := f.svc.CreateRoom(ctx, host, CreateRoomParams{Name: "nowhere", MaxPlayers: 4})
	require.ErrorIs(t, err, cp.ErrUnavailable, "both lost")
	hs["a"].setDown(false)
	f.svc.shardRound(ctx)
	require.Equal(t, "a", f.shardOf(id))
}

package cli_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// count returns how many stdout lines so far start with prefix.
func (b *bg) count(prefix string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// awaitN waits until n stdout lines start with prefix.
func (b *bg) awaitN(t *testing.T, prefix string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for b.count(prefix) < n {
		if time.Now().After(deadline) {
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Fatalf("fewer than %d lines %q in %q", n, prefix, b.lines)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A shard that stays unreachable (its child stopped: running, but not
// answering) loses its room to the other shard after the grace; both
// CLI sessions of the room take fresh keys and fresh nodes by themselves
// and the player reaches the host's game again. The other shard's room
// keeps its node. When the shard answers again, the moved room's user
// and nodes on it are deleted before it takes a new room.
func TestSessionsFollowTheirRoomOffALostShard(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Headscale.Shards = 2
		s.Config.Headscale.ShardGrace = time.Second
	})
	ctx := roomnettest.Context(t, 4*time.Minute)
	sups := h.Server.Shards()
	require.Len(t, sups, 2)

	// A room on shard 0 (the first placed, ties go by name) with its
	// host's node; it must not notice.
	carol := h.User("carol")
	other, err := carol.CreateRoom(ctx, roomnet.CreateRoom{Name: "stays", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	require.Equal(t, "default", other.Shard)
	otherNode := roomnettest.Node(t, other.Join, "other-host")
	lc, err := otherNode.Tsnet().LocalClient()
	require.NoError(t, err)
	before, err := lc.Status(ctx)
	require.NoError(t, err)

	h.User("alice")
	h.User("bob")
	alice, bob := newUser(t), newUser(t)
	alice.login(t, h, "alice")
	bob.login(t, h, "bob")
	port := freePort(t)
	fakeGame(t, port)
	host := alice.start("host", "--name", "moving", "--game", "fake", "--max", "4", "--port", fmt.Sprintf("%d/tcp", port))
	link := host.await(t, "link:")
	host.await(t, "node up:")
	player := bob.start("join", link, "--bind", "127.0.0.3", "--json")
	player.await(t, `{"event":"host_reached"`)
	echo := func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.3:%d", port), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintln(c, "hello")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "game:hello\n" {
			return fmt.Errorf("got %q", line)
		}
		return nil
	}
	require.Eventually(t, func() bool { return echo() == nil }, 30*time.Second, 200*time.Millisecond, "the player reaches the host's game")
	rooms, err := h.Admin.AdminRooms(ctx, nil)
	require.NoError(t, err)
	var moving roomnet.Room
	for _, r := range rooms.Rooms {
		if r.Name == "moving" {
			moving = r
		}
	}
	require.Equal(t, "hs-1", moving.Shard)
	oldUsers, err := sups[1].Client().ListUsers(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, oldUsers)

	// Shard 1 stops answering, and stays so.
	pid := sups[1].PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})

	host.await(t, "the room moved to another server")
	player.await(t, `{"event":"room_moved"`)
	r, err := h.Admin.Room(ctx, moving.ID)
	require.NoError(t, err)
	require.Equal(t, "default", r.Shard)
	host.awaitN(t, "node up:", 2, 60*time.Second)
	player.awaitN(t, `{"event":"host_reached"`, 2, 90*time.Second)
	require.Eventually(t, func() bool { return echo() == nil }, 30*time.Second, 200*time.Millisecond, "the player reaches the host's game again, on shard 0")
	require.Equal(t, 1, player.count(`{"event":"room_moved"`))
	require.Equal(t, 1, host.count("+ bob"), "the live view goes on: bob is not shown joining again")

	// The other room did not notice: same room, same node, still up.
	r, err = h.Admin.Room(ctx, other.ID)
	require.NoError(t, err)
	require.Equal(t, "default", r.Shard)
	after, err := lc.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "Running", after.BackendState)
	require.Equal(t, before.Self.PublicKey, after.Self.PublicKey)

	// Shard 1 answers again: reconciled (the moved room's user and nodes
	// there deleted) before it takes a new room.
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	resumed = true
	require.Eventually(t, func() bool {
		shards, err := h.Admin.Shards(ctx)
		if err != nil {
			return false
		}
		for _, s := range shards {
			if s.Name == "hs-1" {
				return s.Healthy && !s.Quarantined
			}
		}
		return false
	}, 60*time.Second, 200*time.Millisecond, "shard 1 healthy and out of quarantine")
	users, err := sups[1].Client().ListUsers(ctx)
	require.NoError(t, err)
	for _, u := range users {
		require.NotContains(t, u.Name, moving.ID, "the moved room's user is gone from shard 1")
	}
	nodes, err := sups[1].Client().ListNodes(ctx, "")
	require.NoError(t, err)
	require.Empty(t, nodes, "the moved room's nodes are gone from shard 1")
	next, err := h.User("dave").CreateRoom(ctx, roomnet.CreateRoom{Name: "next", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	require.Equal(t, "hs-1", next.Shard, "shard 1, emptier, takes new rooms again")
	require.NoError(t, echo(), "the moved room still works")
}

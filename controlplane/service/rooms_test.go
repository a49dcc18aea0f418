package service

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// The room password's bcrypt runs before the join takes its transaction
// and the room's lock: while it runs, the database (SQLite has one
// connection) and the room are free for everyone else.
func TestRoomPasswordIsCheckedOutsideTheTransactionAndLock(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	roomID, _ := f.room(alice, true, "")
	// A cheap hash keeps the test fast; the join compares at the hash's cost.
	hash, err := bcrypt.GenerateFromPassword([]byte("open sesame"), bcrypt.MinCost)
	require.NoError(t, err)
	require.NoError(t, f.st.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		r.PasswordHash = hash
		return tx.SaveRoom(&r)
	}))
	var checks atomic.Int32
	f.svc.hookPasswordChecked = func() {
		checks.Add(1)
		// An unrelated request's read (GET /me authenticates through the
		// store): it needs the connection a transaction would hold.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := f.st.UserByID(rctx, alice.ID)
		require.NoError(t, err, "the database is held while the password is checked")
		m := f.svc.lockOf(roomID)
		require.True(t, m.TryLock(), "the room's lock is held while the password is checked")
		m.Unlock()
	}
	_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "wrong")
	require.ErrorIs(t, err, cp.ErrWrongPassword)
	_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "open sesame")
	require.NoError(t, err)
	require.Equal(t, int32(1), checks.Load(), "the hook runs after a successful check")
}

// Private rooms do not exist for outsiders: every room route answers
// not found to them, not forbidden or not a member.
func TestPrivateRoomsAreNotFoundForOutsiders(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob, eve, admin := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer), f.user("eve", cp.RolePlayer), f.user("root", cp.RoleAdmin)
	roomID, _ := f.room(alice, false, "")
	sum, _, err := f.svc.GetRoom(ctx, alice, roomID)
	require.NoError(t, err)
	_, _, err = f.svc.JoinByInvite(ctx, bob, sum.InviteCode)
	require.NoError(t, err)

	for name, call := range map[string]func(cp.User) error{
		"get":     func(u cp.User) error { _, _, err := f.svc.GetRoom(ctx, u, roomID); return err },
		"members": func(u cp.User) error { _, err := f.svc.Members(ctx, u, roomID); return err },
		"join":    func(u cp.User) error { _, _, err := f.svc.JoinRoom(ctx, u, roomID, ""); return err },
		"key":     func(u cp.User) error { _, err := f.svc.RenewKey(ctx, u, roomID); return err },
		"paths":   func(u cp.User) error { return f.svc.ReportPaths(ctx, u, roomID, nil) },
		"kick":    func(u cp.User) error { _, err := f.svc.Kick(ctx, u, roomID, "bob"); return err },
		"invite":  func(u cp.User) error { _, err := f.svc.RotateInvite(ctx, u, roomID); return err },
		"close":   func(u cp.User) error { _, err := f.svc.CloseRoom(ctx, u, roomID); return err },
	} {
		require.ErrorIs(t, call(eve), cp.ErrNotFound, "%s by an outsider", name)
	}
	// A member who is not the host learns what they may not do.
	_, err = f.svc.Kick(ctx, bob, roomID, "alice")
	require.ErrorIs(t, err, cp.ErrForbidden)
	_, err = f.svc.RotateInvite(ctx, bob, roomID)
	require.ErrorIs(t, err, cp.ErrForbidden)
	_, err = f.svc.CloseRoom(ctx, bob, roomID)
	require.ErrorIs(t, err, cp.ErrForbidden)

	// Path reports reach the room's members (doctor --room's matrix) but
	// a member's public endpoint reaches admins only.
	require.NoError(t, f.svc.ReportPaths(ctx, bob, roomID, []Link{{Peer: "alice", Addr: "192.0.2.1:41641", Direct: true}}))
	addrs := func(u cp.User) (paths int, withAddr int) {
		ms, err := f.svc.Members(ctx, u, roomID)
		require.NoError(t, err)
		for _, m := range ms {
			if m.Paths == nil {
				continue
			}
			for _, l := range m.Paths.Links {
				paths++
				if l.Addr != "" {
					withAddr++
				}
			}
		}
		return paths, withAddr
	}
	paths, withAddr := addrs(alice)
	require.Equal(t, 1, paths, "a member sees the room's paths")
	require.Zero(t, withAddr, "a member sees another member's endpoint")
	paths, withAddr = addrs(admin)
	require.Equal(t, 1, paths)
	require.Equal(t, 1, withAddr, "an admin sees the endpoint")

	// An admin may join a private room by id; it is audited.
	_, _, err = f.svc.JoinRoom(ctx, admin, roomID, "")
	require.NoError(t, err)
	log, err := f.svc.AuditLog(ctx, admin, 0, 10)
	require.NoError(t, err)
	require.NotEmpty(t, log)
	require.Equal(t, cp.AuditJoinPrivate, log[0].Action)
	require.Equal(t, roomID, log[0].Target)
}

// A join retried after the first answer was lost (or the server stopped
// between the membership and the key) gets a fresh key, unless the
// member's node is online.
func TestRetriedJoinOfAMemberWithoutANodeGetsAKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	roomID, _ := f.room(alice, true, "")
	// The crash: bob's membership committed, no key minted.
	require.NoError(t, f.st.Tx(ctx, func(tx *store.Tx) error {
		return tx.SaveMember(&cp.Member{RoomID: roomID, UserID: bob.ID, State: cp.MemberActive, JoinedAt: time.Now()})
	}))
	g, evs, err := f.svc.JoinRoom(ctx, bob, roomID, "")
	require.NoError(t, err, "a member with no node joins again")
	require.NotEmpty(t, g.AuthKey)
	require.Empty(t, evs, "no second member_joined")
	_, err = f.hs.register(g.AuthKey)
	require.NoError(t, err)
	_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "")
	require.ErrorIs(t, err, cp.ErrAlreadyMember, "the member's node is online")
}

// A room whose host never got a key does not outlive the failure: closed
// at once when the key mint fails, and by reconciliation after a crash.
func TestRoomsWhoseHostGotNoKeyAreClosed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t), func(o *Options) { o.MaxRoomsPerUser = 1; o.ReconcileGrace = time.Nanosecond })
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)

	f.hs.failKeys(true)
	_, _, _, err := f.svc.CreateRoom(ctx, alice, CreateRoomParams{Name: "first", MaxPlayers: 4})
	require.ErrorIs(t, err, cp.ErrUnavailable)
	f.hs.failKeys(false)
	_, _, _, err = f.svc.CreateRoom(ctx, alice, CreateRoomParams{Name: "second", MaxPlayers: 4})
	require.NoError(t, err, "the failed room does not count toward the limit")

	// The crash: a room row and its host's membership, no key.
	now := time.Now().Add(-time.Hour)
	u, err := f.hs.CreateUser(ctx, RoomUserPrefix+"crashed")
	require.NoError(t, err)
	require.NoError(t, f.st.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.CreateRoom(&cp.Room{ID: "crashed", Name: "c", MaxPlayers: 4, HostID: bob.ID, InviteCode: "CRASHED1", Shard: "default",
			HeadscaleUserID: u.ID, HeadscaleUser: u.Name, CreatedAt: now}); err != nil {
			return err
		}
		return tx.SaveMember(&cp.Member{RoomID: "crashed", UserID: bob.ID, State: cp.MemberActive, JoinedAt: now})
	}))
	rep, err := f.svc.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Abandoned)
	r, err := f.st.Room(ctx, "crashed")
	require.NoError(t, err)
	require.False(t, r.Open())
	require.Contains(t, f.pub.types("crashed"), "room_closed ")
	_, _, _, err = f.svc.CreateRoom(ctx, bob, CreateRoomParams{Name: "again", MaxPlayers: 4})
	require.NoError(t, err)
	rep, err = f.svc.Reconcile(ctx)
	require.NoError(t, err)
	require.Zero(t, rep.Abandoned, "rooms with keys stay open")
}

// The events of one room are published in the order their mutations
// happened, even when publishing is slow: the service publishes under the
// room's lock, so a kick cannot overtake the join it follows.
func TestEventsOfARoomArePublishedInOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	roomID, _ := f.room(alice, true, "")
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.pub.block = func(e cp.Event) {
		if e.Type == cp.EventMemberJoined && e.Username == "bob" {
			once.Do(func() { close(held) })
			<-release
		}
	}
	joined := make(chan error, 1)
	go func() { _, _, err := f.svc.JoinRoom(ctx, bob, roomID, ""); joined <- err }()
	<-held // bob's join is committed; its event is on its way
	kicked := make(chan error, 1)
	go func() { _, err := f.svc.Kick(ctx, alice, roomID, "bob"); kicked <- err }()
	select {
	case err := <-kicked:
		t.Fatalf("the kick finished (%v) before the join's event was published", err)
	case <-time.After(300 * time.Millisecond):
		// Not a timing assertion: with the fix the kick cannot finish
		// here at all; the wait only gives a broken ordering the chance
		// to show.
	}
	close(release)
	require.NoError(t, <-joined)
	require.NoError(t, <-kicked)
	require.Equal(t, []string{"room_created alice", "member_joined alice", "member_joined bob", "member_kicked bob"}, f.pub.types(roomID))
}

// One user's concurrent room creations cannot exceed the per-user limit
// (on PostgreSQL the count and the insert race without the user's row
// lock).
func TestRoomLimitHoldsUnderConcurrentCreates(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			f := newFixture(t, e, func(o *Options) { o.MaxRoomsPerUser = 2 })
			alice := f.user("alice", cp.RolePlayer)
			var wg sync.WaitGroup
			var ok atomic.Int32
			for i := range 8 {
				wg.Go(func() {
					_, _, _, err := f.svc.CreateRoom(ctx, alice, CreateRoomParams{Name: fmt.Sprintf("r%d", i), MaxPlayers: 4})
					if err == nil {
						ok.Add(1)
					}
				})
			}
			wg.Wait()
			require.Equal(t, int32(2), ok.Load())
			var n int64
			require.NoError(t, f.st.Tx(ctx, func(tx *store.Tx) error { var err error; n, err = tx.CountOpenRoomsHostedBy(alice.ID); return err }))
			require.Equal(t, int64(2), n)
		})
	}
}

// A key minted for a member who is kicked meanwhile (another node, on
// PostgreSQL, does not share this process's room lock) is never recorded
// or handed out.
func TestKeyIsNotRecordedForAMemberKickedMeanwhile(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			f := newFixture(t, e)
			alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
			roomID, _ := f.room(alice, true, "")
			_, _, err := f.svc.JoinRoom(ctx, bob, roomID, "")
			require.NoError(t, err)
			room, err := f.st.Room(ctx, roomID)
			require.NoError(t, err)
			// What another node's kick does between this node's checks and
			// its key mint.
			require.NoError(t, f.st.Tx(ctx, func(tx *store.Tx) error {
				return tx.SaveMember(&cp.Member{RoomID: roomID, UserID: bob.ID, State: cp.MemberKicked, JoinedAt: time.Now()})
			}))
			_, err = f.svc.mint(ctx, f.svc.shards["default"], room, bob.ID)
			require.ErrorIs(t, err, cp.ErrKicked)
			keys, err := f.st.JoinKeysOf(ctx, roomID, bob.ID)
			require.NoError(t, err)
			require.Len(t, keys, 1, "only the key of the join")
		})
	}
}

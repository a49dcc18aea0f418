package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// The service's own tests: a real store (SQLite in a temporary directory,
// and PostgreSQL when ROOMNET_TEST_POSTGRES is set) and a Headscale double
// at the gRPC edge. The roomnetd tests run the same rules end to end
// against a real Headscale and real nodes.

type fixture struct {
	t   *testing.T
	svc *Service
	st  *store.Store
	hs  *hsDouble
	pub *recorder
}

// recorder is a Publisher that keeps the events in the order published.
type recorder struct {
	mu     sync.Mutex
	events []cp.Event
	// block, when set, is called with each event before it is recorded.
	block func(cp.Event)
}

func (r *recorder) Publish(_ context.Context, events ...cp.Event) {
	for _, e := range events {
		if r.block != nil {
			r.block(e)
		}
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}
}

func (r *recorder) types(roomID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if roomID == "" || e.RoomID == roomID {
			out = append(out, fmt.Sprintf("%s %s", e.Type, e.Username))
		}
	}
	return out
}

func newFixture(t *testing.T, e dbtest.Engine, opts ...func(*Options)) *fixture {
	t.Helper()
	st, err := store.Open(e.Driver, e.DSN)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	hs := newHSDouble()
	o := Options{
		Shards:          []Shard{{Name: "default", Client: hs, LoginServer: "http://127.0.0.1:1"}},
		JoinKeyTTL:      5 * time.Minute,
		MaxPlayers:      16,
		MaxRoomsPerUser: 10,
		TokenTTL:        time.Hour,
		CutGrace:        time.Millisecond,
		CutRetry:        10 * time.Millisecond,
		CutTimeout:      time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range opts {
		f(&o)
	}
	svc, err := New(st, o)
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	pub := &recorder{}
	svc.SetPublisher(pub)
	return &fixture{t: t, svc: svc, st: st, hs: hs, pub: pub}
}

func sqliteOnly(t *testing.T) dbtest.Engine {
	return dbtest.Engines(t)[0]
}

// user creates an account straight in the store (no bcrypt: fast).
func (f *fixture) user(name string, role string) cp.User {
	f.t.Helper()
	u := cp.User{Username: name, PasswordHash: []byte("x"), Role: role, CreatedAt: time.Now()}
	require.NoError(f.t, f.st.CreateUser(context.Background(), &u))
	return u
}

func (f *fixture) room(host cp.User, public bool, password string) (string, Grant) {
	f.t.Helper()
	r, g, _, err := f.svc.CreateRoom(context.Background(), host, CreateRoomParams{Name: "room of " + host.Username, MaxPlayers: 8, Public: public, Password: password})
	require.NoError(f.t, err)
	return r.ID, g
}

func (f *fixture) eventually(what string, cond func() error) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("%s: %v", what, err)
}

// A user who passed authentication before a ban is refused inside the
// join, create and key transactions, which re-read the ban.
func TestBannedUserIsRefusedInsideTheTransactions(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			f := newFixture(t, e)
			alice, bob, carol := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer), f.user("carol", cp.RolePlayer)
			roomID, _ := f.room(alice, true, "")
			_, _, err := f.svc.JoinRoom(ctx, carol, roomID, "")
			require.NoError(t, err)
			// bob and carol are banned after their requests were
			// authenticated: the actor values still say "not banned".
			now := time.Now()
			require.NoError(t, f.st.SetBanned(ctx, bob.ID, &now))
			require.NoError(t, f.st.SetBanned(ctx, carol.ID, &now))

			_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "")
			require.ErrorIs(t, err, cp.ErrForbidden, "join")
			inv, _, err := f.svc.GetRoom(ctx, alice, roomID)
			require.NoError(t, err)
			_, _, err = f.svc.JoinByInvite(ctx, bob, inv.InviteCode)
			require.ErrorIs(t, err, cp.ErrForbidden, "join by invite")
			_, _, _, err = f.svc.CreateRoom(ctx, bob, CreateRoomParams{Name: "mine", MaxPlayers: 4})
			require.ErrorIs(t, err, cp.ErrForbidden, "create")
			_, err = f.svc.RenewKey(ctx, carol, roomID)
			require.ErrorIs(t, err, cp.ErrForbidden, "renew key")

			members, err := f.st.ActiveMembers(ctx, roomID)
			require.NoError(t, err)
			require.Len(t, members, 2, "alice and carol; bob never got in")
			n, err := f.svc.store.JoinKeysOf(ctx, roomID, carol.ID)
			require.NoError(t, err)
			require.Len(t, n, 1, "no key was recorded for the banned member")
		})
	}
}

// Bans and joins racing: the banned user ends with no membership and no
// node, whatever the interleaving.
func TestBanConvergesAgainstConcurrentJoins(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			f := newFixture(t, e, func(o *Options) { o.MaxRoomsPerUser = 100 })
			admin, alice := f.user("admin", cp.RoleAdmin), f.user("alice", cp.RolePlayer)
			for round := range 5 {
				bob := f.user(fmt.Sprintf("bob%d", round), cp.RolePlayer)
				var rooms []string
				for range 6 {
					id, _ := f.room(alice, true, "")
					rooms = append(rooms, id)
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				var nodes []uint64
				for _, id := range rooms {
					wg.Go(func() {
						g, _, err := f.svc.JoinRoom(ctx, bob, id, "")
						if err != nil {
							return
						}
						if n, err := f.hs.register(g.AuthKey); err == nil {
							mu.Lock()
							nodes = append(nodes, n.ID)
							mu.Unlock()
						}
					})
				}
				wg.Go(func() {
					if _, _, err := f.svc.Ban(ctx, admin, bob.Username, 0, ""); err != nil {
						t.Errorf("ban: %v", err)
					}
				})
				wg.Wait()
				left, err := f.st.RoomsOf(ctx, bob.ID)
				require.NoError(t, err)
				require.Empty(t, left, "round %d: the banned user is still a member", round)
				f.eventually("the banned user's nodes are gone", func() error {
					for _, id := range nodes {
						if n, ok := f.hs.node(id); ok {
							return fmt.Errorf("round %d: node %d still there (online %v)", round, id, n.Online)
						}
					}
					return nil
				})
			}
		})
	}
}

// A ban that stopped half-way (the process died after the ban committed)
// is finished by reconciliation: the membership ends, the node goes and
// the event is published.
func TestReconcileEndsBannedUsersMemberships(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	roomID, _ := f.room(alice, true, "")
	g, _, err := f.svc.JoinRoom(ctx, bob, roomID, "")
	require.NoError(t, err)
	n, err := f.hs.register(g.AuthKey)
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, f.st.SetBanned(ctx, bob.ID, &now))

	rep, err := f.svc.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Evicted)
	left, err := f.st.RoomsOf(ctx, bob.ID)
	require.NoError(t, err)
	require.Empty(t, left)
	require.Contains(t, f.pub.types(roomID), "member_left bob")
	f.eventually("the banned user's node is gone", func() error {
		if _, ok := f.hs.node(n.ID); ok {
			return errors.New("still there")
		}
		return nil
	})
}

// A kick, leave or close while Headscale is down is recorded and
// published, answers ErrUnavailable (not success), and the cut is made as
// soon as Headscale answers again.
func TestCutsWhileHeadscaleIsDownAreRetried(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob, carol, dave := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer), f.user("carol", cp.RolePlayer), f.user("dave", cp.RolePlayer)
	roomID, _ := f.room(alice, true, "")
	var nodes []uint64
	for _, u := range []cp.User{bob, carol} {
		g, _, err := f.svc.JoinRoom(ctx, u, roomID, "")
		require.NoError(t, err)
		n, err := f.hs.register(g.AuthKey)
		require.NoError(t, err)
		nodes = append(nodes, n.ID)
	}
	other, dg := f.room(dave, true, "")
	dn, err := f.hs.register(dg.AuthKey)
	require.NoError(t, err)
	nodes = append(nodes, dn.ID)

	f.hs.setDown(true)
	_, err = f.svc.Kick(ctx, alice, roomID, "bob")
	require.ErrorIs(t, err, cp.ErrUnavailable, "kick")
	_, err = f.svc.Leave(ctx, carol, roomID)
	require.ErrorIs(t, err, cp.ErrUnavailable, "leave")
	_, err = f.svc.CloseRoom(ctx, dave, other)
	require.ErrorIs(t, err, cp.ErrUnavailable, "close")
	require.Equal(t, 3, f.svc.PendingCuts())
	// The changes are recorded and published meanwhile.
	_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "")
	require.ErrorIs(t, err, cp.ErrKicked, "the kicked member stays out while the cut is pending")
	require.Contains(t, f.pub.types(roomID), "member_kicked bob")
	require.Contains(t, f.pub.types(roomID), "member_left carol")
	require.Contains(t, f.pub.types(other), "room_closed ")
	for _, id := range nodes {
		n, _ := f.hs.node(id)
		require.True(t, n.Online, "nothing was cut while down")
	}
	// A retried kick while down answers the same.
	_, err = f.svc.Kick(ctx, alice, roomID, "bob")
	require.ErrorIs(t, err, cp.ErrUnavailable)

	f.hs.setDown(false)
	f.eventually("pending cuts are made once headscale answers", func() error {
		for _, id := range nodes {
			if n, ok := f.hs.node(id); ok {
				return fmt.Errorf("node %d still there (online %v)", id, n.Online)
			}
		}
		if n := f.svc.PendingCuts(); n != 0 {
			return fmt.Errorf("%d cuts pending", n)
		}
		return nil
	})
	// Retries after the cut are done answer success.
	_, err = f.svc.Kick(ctx, alice, roomID, "bob")
	require.NoError(t, err)
	_, err = f.svc.Leave(ctx, carol, roomID)
	require.ErrorIs(t, err, cp.ErrNotMember)
}

// A node whose registration was in flight when a kick expired the key,
// and that Headscale created just after the cut listed the nodes, does not
// survive until reconciliation: the cut lists again before deleting.
func TestNodeRegisteredDuringACutIsCutToo(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	roomID, _ := f.room(alice, true, "")
	_, _, err := f.svc.JoinRoom(ctx, bob, roomID, "")
	require.NoError(t, err)
	keys, err := f.st.JoinKeysOf(ctx, roomID, bob.ID)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	var late uint64
	f.hs.mu.Lock()
	f.hs.afterList = func() {
		if late == 0 {
			late = f.hs.registerInFlight(keys[0].KeyID).ID
		}
	}
	f.hs.mu.Unlock()
	_, err = f.svc.Kick(ctx, alice, roomID, "bob")
	require.NoError(t, err)
	require.NotZero(t, late)
	f.eventually("the late node is gone", func() error {
		if n, ok := f.hs.node(late); ok {
			return fmt.Errorf("late node still there (online %v)", n.Online)
		}
		return nil
	})
}

package roomnetd_test

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnettest"
)

// A ban racing joins: joins already past authentication when the ban
// commits are refused inside their transactions, so the banned user ends
// in no room and with no working node. Password rooms make each join's
// turn at the database long enough for the ban to land between joins.
func TestBanRacingJoinsLeavesNoMembershipOrNode(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 300*time.Second)
	alice := h.User("alice")
	var bobs []*roomnet.Client
	for round := range 2 {
		bobs = append(bobs, h.User(fmt.Sprintf("bob%d", round)))
	}
	var grants []roomnet.JoinGrant
	for round, bob := range bobs {
		name := fmt.Sprintf("bob%d", round)
		var rooms []string
		for i := range 6 {
			r, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: fmt.Sprintf("race %d.%d", round, i), MaxPlayers: 4, Public: true, Password: "pass-word"})
			require.NoError(t, err)
			rooms = append(rooms, r.ID)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		grants = grants[:0]
		// The ban goes in as the first join is answered, with the others
		// in flight: some joins are in before it, some race it.
		first := make(chan struct{})
		var once sync.Once
		for _, id := range rooms {
			wg.Go(func() {
				g, err := bob.Join(ctx, id, "pass-word")
				once.Do(func() { close(first) })
				if err != nil {
					t.Logf("round %d: join refused: %v", round, err)
				}
				if err == nil {
					mu.Lock()
					grants = append(grants, g)
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			<-first
			if err := h.Admin.Ban(ctx, name); err != nil {
				// 503 unavailable: Headscale did not answer in time (a
				// loaded machine). The ban is recorded and the cut is
				// pending (docs/api.md); the checks below still hold.
				var ae *roomnet.Error
				if errors.As(err, &ae) && ae.Status == 503 && ae.Code == roomnet.CodeUnavailable {
					t.Logf("round %d: ban answered %v", round, err)
					return
				}
				t.Errorf("ban: %v", err)
			}
		})
		wg.Wait()
		// The ban is recorded whatever it answered.
		users, err := h.Admin.Users(ctx, 0)
		require.NoError(t, err)
		banned := false
		for _, u := range users.Users {
			banned = banned || u.Username == name && u.Banned
		}
		require.True(t, banned, "round %d: %s is not banned", round, name)
		t.Logf("round %d: %d of %d joins got a grant", round, len(grants), len(rooms))
		for _, id := range rooms {
			members, err := h.Admin.Members(ctx, id)
			require.NoError(t, err)
			for _, m := range members {
				require.NotEqual(t, name, m.Username, "round %d: the banned user is still in room %s", round, id)
			}
		}
	}
	// Every grant the last banned user got is worthless: a node either
	// does not come up or is cut off.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var nodes []*node.Node
	for i, g := range grants {
		wg.Go(func() {
			n, err := roomnettest.StartNode(t, g, fmt.Sprintf("banned%d", i), 20*time.Second)
			if err == nil {
				mu.Lock()
				nodes = append(nodes, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d of %d nodes came up", len(nodes), len(grants))
	eventually(t, 15*time.Second, "the banned user's nodes are cut off", func() error {
		for _, n := range nodes {
			if st, err := n.State(ctx); err != nil || st == "Running" {
				return fmt.Errorf("a node of the banned user is %s (%v)", st, err)
			}
		}
		return nil
	})
	hsNodes, err := h.Server.Headscale().Client().ListNodes(ctx, "")
	require.NoError(t, err)
	for _, n := range hsNodes {
		require.False(t, n.Online, "a node of the banned user is online in headscale: %s", n.Name)
	}
}

// Kick, leave and close while Headscale does not answer: they answer 503
// with the change recorded (the kicked member stays out), and the nodes
// are cut off as soon as Headscale answers again, not at the next
// reconciliation a minute later.
func TestCutsWhileHeadscaleHangsHappenWhenItAnswers(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 180*time.Second)
	alice, bob, carol, dave := h.User("alice"), h.User("bob"), h.User("carol"), h.User("dave")
	room := createRoom(t, alice, "kick while down", 4)
	host := roomnettest.Node(t, room.Join, "host")
	kicked := roomnettest.Node(t, join(t, bob, room.ID), "kicked")
	leaver := roomnettest.Node(t, join(t, carol, room.ID), "leaver")
	other := createRoom(t, dave, "closed while down", 4)
	closed := roomnettest.Node(t, other.Join, "closed")
	require.NoError(t, host.WaitPeer(ctx, kicked.IP()))
	require.NoError(t, host.WaitPeer(ctx, leaver.IP()))

	// Headscale hangs (stopped, not dead: the supervisor does not restart
	// it, so the test controls when it answers again).
	pid := h.Server.Headscale().PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
		}
	}
	t.Cleanup(resume)

	requireCode(t, alice.Kick(ctx, room.ID, "bob"), 503, roomnet.CodeUnavailable)
	requireCode(t, carol.Leave(ctx, room.ID), 503, roomnet.CodeUnavailable)
	requireCode(t, dave.CloseRoom(ctx, other.ID), 503, roomnet.CodeUnavailable)
	// The changes are recorded meanwhile.
	_, err := bob.Join(ctx, room.ID, "")
	requireCode(t, err, 403, roomnet.CodeKicked)
	_, err = carol.RenewKey(ctx, room.ID)
	requireCode(t, err, 409, roomnet.CodeNotMember)
	_, err = dave.RenewKey(ctx, other.ID)
	requireCode(t, err, 410, roomnet.CodeRoomClosed)

	resume()
	back := time.Now()
	eventually(t, 20*time.Second, "the kicked, left and closed nodes are cut off", func() error {
		for _, n := range []*node.Node{kicked, leaver, closed} {
			if st, err := n.State(ctx); err != nil || st == "Running" {
				return fmt.Errorf("state %s, err %v", st, err)
			}
		}
		return nil
	})
	t.Logf("cut %s after headscale answered again", time.Since(back).Round(time.Millisecond))
	st, err := host.State(ctx)
	require.NoError(t, err)
	require.Equal(t, "Running", st, "the host stays")
	// Repeating the requests now answers success (kick, close) or says
	// the leave is done.
	require.NoError(t, alice.Kick(ctx, room.ID, "bob"))
	requireCode(t, carol.Leave(ctx, room.ID), 409, roomnet.CodeNotMember)
	requireCode(t, dave.CloseRoom(ctx, other.ID), 410, roomnet.CodeRoomClosed)
}

// Private rooms do not exist for outsiders on any route, path reports
// (members' endpoints) reach admins only, and an admin's join of a
// private room by id is audited.
func TestPrivateRoomsAreNotFoundForOutsiders(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	alice, bob, eve := h.User("alice"), h.User("bob"), h.User("eve")
	priv, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "secret", MaxPlayers: 4})
	require.NoError(t, err)
	_, err = bob.JoinInvite(ctx, priv.InviteCode)
	require.NoError(t, err)

	requireCode(t, eve.Kick(ctx, priv.ID, "bob"), 404, roomnet.CodeNotFound)
	requireCode(t, eve.CloseRoom(ctx, priv.ID), 404, roomnet.CodeNotFound)
	_, err = eve.RotateInvite(ctx, priv.ID)
	requireCode(t, err, 404, roomnet.CodeNotFound)
	_, err = eve.RenewKey(ctx, priv.ID)
	requireCode(t, err, 404, roomnet.CodeNotFound)
	requireCode(t, eve.ReportPaths(ctx, priv.ID, nil), 404, roomnet.CodeNotFound)
	_, err = eve.Join(ctx, priv.ID, "")
	requireCode(t, err, 404, roomnet.CodeNotFound)
	// Members who are not the host are told no.
	requireCode(t, bob.Kick(ctx, priv.ID, "alice"), 403, roomnet.CodeForbidden)
	requireCode(t, bob.CloseRoom(ctx, priv.ID), 403, roomnet.CodeForbidden)

	links := []roomnet.Link{{Peer: "alice", IP: "100.64.0.1", Direct: true, Addr: "192.0.2.7:41641", RTTMS: 3}}
	require.NoError(t, bob.ReportPaths(ctx, priv.ID, links))
	members, err := alice.Members(ctx, priv.ID)
	require.NoError(t, err)
	for _, m := range members {
		if m.Username != "bob" {
			continue
		}
		// A member sees bob's paths, not the endpoints in them.
		require.Equal(t, []roomnet.Link{{Peer: "alice", IP: "100.64.0.1", Direct: true, RTTMS: 3}}, m.Links)
		require.NotNil(t, m.ReportedAt)
		require.Equal(t, "client", m.PathSource)
	}

	_, err = h.Admin.Join(ctx, priv.ID, "")
	require.NoError(t, err, "admins may join a private room by id")
	audit, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	require.NotEmpty(t, audit.Entries)
	require.Equal(t, "join_private", audit.Entries[0].Action)
	require.Equal(t, priv.ID, audit.Entries[0].Target)
}

// A join retried after its answer was lost gets a fresh key instead of
// already_member, as long as the member's node is not online.
func TestRetriedJoinGetsAFreshKey(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "retry", 4)
	host := roomnettest.Node(t, room.Join, "host")
	_, err := bob.Join(ctx, room.ID, "")
	require.NoError(t, err)
	// The answer was lost; the launcher tries again.
	g, err := bob.Join(ctx, room.ID, "")
	require.NoError(t, err, "a member with no node gets a fresh key")
	player := roomnettest.Node(t, g, "player")
	require.NoError(t, host.WaitPeer(ctx, player.IP()))
	eventually(t, 10*time.Second, "the member's node is online", func() error {
		_, err := bob.Join(ctx, room.ID, "")
		var ae *roomnet.Error
		if errors.As(err, &ae) && ae.Code == roomnet.CodeAlreadyMember {
			return nil
		}
		return fmt.Errorf("join answered %v", err)
	})
}

package roomnetd_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// A crash between two steps leaves Headscale holding things no open room
// accounts for; reconciliation removes them and leaves the rest alone.
func TestReconcileRemovesWhatNoOpenRoomAccountsFor(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Server.ReconcileGrace = time.Nanosecond })
	ctx := roomnettest.Context(t, 90*time.Second)
	hs := h.Server.Headscale().Client()
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "kept", 4)
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	require.NoError(t, host.WaitPeer(ctx, player.IP()))

	// Crash after creating a room's Headscale user, before its row.
	orphan, err := hs.CreateUser(ctx, service.RoomUserPrefix+"orphan")
	require.NoError(t, err)
	_, err = hs.CreatePreAuthKey(ctx, orphan.ID, true, time.Hour)
	require.NoError(t, err)
	// Users that are not rooms belong to the operator: never touched.
	operator, err := hs.CreateUser(ctx, "operator")
	require.NoError(t, err)
	// Keys minted behind our back into an open room: one used by an
	// intruding node, one lying around.
	users, err := hs.ListUsers(ctx)
	require.NoError(t, err)
	var roomUser uint64
	for _, u := range users {
		if u.Name == service.RoomUserPrefix+room.ID {
			roomUser = u.ID
		}
	}
	require.NotZero(t, roomUser)
	intruderKey, err := hs.CreatePreAuthKey(ctx, roomUser, true, time.Hour)
	require.NoError(t, err)
	loose, err := hs.CreatePreAuthKey(ctx, roomUser, true, time.Hour)
	require.NoError(t, err)
	intruder := roomnettest.Node(t, roomnet.JoinGrant{LoginServer: room.Join.LoginServer, AuthKey: intruderKey.Key}, "intruder")
	require.NoError(t, host.WaitPeer(ctx, intruder.IP()), "the intruder got in through Headscale directly")
	// Someone loosened the policy.
	require.NoError(t, hs.SetPolicy(ctx, `{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}`))

	rep, err := h.Server.Service.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, rep.PolicySet)
	require.Equal(t, 1, rep.Users)

	pol, err := hs.GetPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, service.IsolationPolicy, pol)
	users, err = hs.ListUsers(ctx)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, u := range users {
		names[u.Name] = true
	}
	require.Equal(t, map[string]bool{service.RoomUserPrefix + room.ID: true, operator.Name: true}, names)
	nodes, err := hs.ListNodes(ctx, "")
	require.NoError(t, err)
	require.Len(t, nodes, 2, "the intruder's node is gone, the members' stay")
	for _, n := range nodes {
		require.NotEqual(t, intruder.IP(), n.IPs[0])
	}
	keys, err := hs.ListPreAuthKeys(ctx)
	require.NoError(t, err)
	for _, k := range keys {
		require.NotEqual(t, loose.ID, k.ID, "the loose key is gone")
		require.NotEqual(t, orphan.ID, k.UserID, "the orphan's keys are gone")
	}
	eventually(t, 5*time.Second, "host drops the intruder", func() error {
		if ok, _ := host.IsPeer(ctx, intruder.IP()); ok {
			return fmt.Errorf("intruder still a peer")
		}
		return nil
	})
	// Members are untouched.
	serveEcho(t, host, 7777)
	eventually(t, 30*time.Second, "members still reach each other", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), player, host.IP(), 7777, "still here")
	})

	rep, err = h.Server.Service.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, service.Report{}, rep, "a second pass finds nothing to do")
}

// The embedded Headscale is supervised: killed, it comes back, and rooms
// keep working.
func TestEmbeddedHeadscaleRestartsAfterCrash(t *testing.T) {
	h := roomnettest.New(t)
	sup := h.Server.Headscale()
	ctx := roomnettest.Context(t, 90*time.Second)
	pid := sup.PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	eventually(t, 30*time.Second, "headscale restarted", func() error {
		if sup.Restarts() != 1 || !sup.Ready() || sup.PID() == pid {
			return fmt.Errorf("restarts %d ready %v", sup.Restarts(), sup.Ready())
		}
		return nil
	})
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "after crash", 2)
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	require.NoError(t, player.WaitPeer(ctx, host.IP()))
	require.NoError(t, h.Server.Ready(ctx))
}

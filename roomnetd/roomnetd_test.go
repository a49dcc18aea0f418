package roomnetd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

func createRoom(t *testing.T, c *roomnet.Client, name string, max int) roomnet.CreateRoomResponse {
	t.Helper()
	r, err := c.CreateRoom(roomnettest.Context(t, 30*time.Second), roomnet.CreateRoom{Name: name, Game: "testgame", MaxPlayers: max, Public: true})
	require.NoError(t, err)
	return r
}

func join(t *testing.T, c *roomnet.Client, roomID string) roomnet.JoinGrant {
	t.Helper()
	g, err := c.Join(roomnettest.Context(t, 30*time.Second), roomID, "")
	require.NoError(t, err)
	return g
}

// serveEcho is a game server on the node's room address.
func serveEcho(t *testing.T, n *node.Node, port uint16) {
	t.Helper()
	ln, err := n.Listen(port)
	require.NoError(t, err)
	pc, err := n.ListenPacket(port)
	require.NoError(t, err)
	roomnettest.ServeEcho(t, ln, pc, "echo:")
}

// tcpEcho dials the peer and checks one echoed line.
func tcpEcho(ctx context.Context, from *node.Node, to netip.Addr, port uint16, msg string) error {
	c, err := from.Dial(ctx, "tcp", netip.AddrPortFrom(to, port).String())
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "echo:"+msg+"\n" {
		return fmt.Errorf("got %q", line)
	}
	return nil
}

// udpEcho sends datagrams until one echo comes back (UDP may be lost while
// the first WireGuard handshake completes).
func udpEcho(ctx context.Context, from *node.Node, to netip.Addr, port uint16, msg string) error {
	if ok, err := from.IsPeer(ctx, to); err != nil || !ok {
		return fmt.Errorf("%w: %s", node.ErrNotPeer, to)
	}
	pc, err := from.ListenPacket(0)
	if err != nil {
		return err
	}
	defer pc.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, port))
	buf := make([]byte, 2048)
	for ctx.Err() == nil {
		if _, err := pc.WriteTo([]byte(msg), dst); err != nil {
			return err
		}
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err == nil {
			if got := string(buf[:n]); got != "echo:"+msg {
				return fmt.Errorf("got %q", got)
			}
			return nil
		}
	}
	return ctx.Err()
}

func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

func TestRoomMembersReachEachOtherOnlyInTheirRoom(t *testing.T) {
	h := roomnettest.New(t)
	alice, bob, carol, dave := h.User("alice"), h.User("bob"), h.User("carol"), h.User("dave")

	roomA := createRoom(t, alice, "room A", 4)
	roomB := createRoom(t, carol, "room B", 4)
	aHost := roomnettest.Node(t, roomA.Join, "a-host")
	aPlayer := roomnettest.Node(t, join(t, bob, roomA.ID), "a-player")
	bHost := roomnettest.Node(t, roomB.Join, "b-host")
	bPlayer := roomnettest.Node(t, join(t, dave, roomB.ID), "b-player")
	serveEcho(t, aHost, 7777)
	serveEcho(t, aPlayer, 7777)

	ctx := roomnettest.Context(t, 60*time.Second)
	require.NoError(t, aPlayer.WaitPeer(ctx, aHost.IP()))
	require.NoError(t, aHost.WaitPeer(ctx, aPlayer.IP()))
	require.NoError(t, bHost.WaitPeer(ctx, bPlayer.IP()))

	// Members of room A reach each other over TCP and UDP, both ways.
	eventually(t, 30*time.Second, "player to host TCP", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), aPlayer, aHost.IP(), 7777, "hello host")
	})
	require.NoError(t, tcpEcho(ctx, aHost, aPlayer.IP(), 7777, "hello player"))
	require.NoError(t, udpEcho(roomnettest.Context(t, 15*time.Second), aPlayer, aHost.IP(), 7777, "udp to host"))
	require.NoError(t, udpEcho(roomnettest.Context(t, 15*time.Second), aHost, aPlayer.IP(), 7777, "udp to player"))

	// ... through our DERP relay: direct UDP is disabled in tests.
	peers, err := aPlayer.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	require.False(t, peers[0].Direct, "path must be relayed")
	require.Equal(t, h.Config.DERP.RegionCode, peers[0].Relay)

	// Room B's nodes have room B's peers and nothing of room A.
	for _, n := range []*node.Node{bHost, bPlayer} {
		peers, err := n.Peers(ctx)
		require.NoError(t, err)
		require.Len(t, peers, 1, "a room B node sees exactly its room mate")
		for _, target := range []netip.Addr{aHost.IP(), aPlayer.IP()} {
			_, err := n.Dial(ctx, "tcp", netip.AddrPortFrom(target, 7777).String())
			require.ErrorIs(t, err, node.ErrNotPeer)
			require.ErrorIs(t, udpEcho(ctx, n, target, 7777, "x"), node.ErrNotPeer)
		}
	}
	for _, n := range []*node.Node{aHost, aPlayer} {
		for _, other := range []netip.Addr{bHost.IP(), bPlayer.IP()} {
			ok, err := n.IsPeer(ctx, other)
			require.NoError(t, err)
			require.False(t, ok, "room A node must not see room B's %s", other)
		}
	}

	// The members API shows both members with their online nodes.
	members, err := alice.Members(ctx, roomA.ID)
	require.NoError(t, err)
	require.Len(t, members, 2)
	ips := map[string]string{}
	for _, m := range members {
		require.Len(t, m.Nodes, 1, m.Username)
		require.NotEmpty(t, m.Nodes[0].IPs)
		ips[m.Username] = m.Nodes[0].IPs[0]
	}
	require.Equal(t, aHost.IP().String(), ips["alice"])
	require.Equal(t, aPlayer.IP().String(), ips["bob"])

	// A non-member may not list room A's members.
	_, err = carol.Members(ctx, roomA.ID)
	requireCode(t, err, 403, roomnet.CodeForbidden)
}

func requireCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	roomnettest.RequireCode(t, err, status, code)
}

func TestKickCutsOffAtOnceAndForGood(t *testing.T) {
	h := roomnettest.New(t)
	alice, bob, eve := h.User("alice"), h.User("bob"), h.User("eve")
	room := createRoom(t, alice, "kick room", 4)
	host := roomnettest.Node(t, room.Join, "host")
	bobGrant := join(t, bob, room.ID)
	player := roomnettest.Node(t, bobGrant, "player")
	serveEcho(t, host, 7777)
	serveEcho(t, player, 7777)
	ctx := roomnettest.Context(t, 90*time.Second)
	eventually(t, 30*time.Second, "player reaches host", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), player, host.IP(), 7777, "before")
	})

	// Neither a non-member nor a plain member may kick.
	requireCode(t, eve.Kick(ctx, room.ID, "bob"), 403, roomnet.CodeForbidden)
	requireCode(t, bob.Kick(ctx, room.ID, "alice"), 403, roomnet.CodeForbidden)

	kicked := time.Now()
	require.NoError(t, alice.Kick(ctx, room.ID, "bob"))
	eventually(t, 5*time.Second, "host loses the kicked player", func() error {
		ok, err := host.IsPeer(ctx, player.IP())
		if err != nil {
			return err
		}
		if ok {
			return errors.New("player still a peer of host")
		}
		return nil
	})
	t.Logf("kicked player cut off in host's netmap after %s", time.Since(kicked).Round(time.Millisecond))
	eventually(t, 5*time.Second, "kicked node stops", func() error {
		if st, err := player.State(ctx); err != nil || st == "Running" {
			return fmt.Errorf("state %s, err %v", st, err)
		}
		return nil
	})
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	require.Error(t, tcpEcho(dctx, host, player.IP(), 7777, "after"))
	require.Error(t, tcpEcho(dctx, player, host.IP(), 7777, "after"))

	// The old key does not bring a node back, and the API refuses a rejoin.
	_, err := roomnettest.StartNode(t, bobGrant, "player-again", 15*time.Second)
	require.Error(t, err, "a used key must not register a node again")
	_, err = bob.Join(ctx, room.ID, "")
	requireCode(t, err, 403, roomnet.CodeKicked)
	_, err = bob.JoinInvite(ctx, room.InviteCode)
	requireCode(t, err, 403, roomnet.CodeKicked)
	_, err = bob.RenewKey(ctx, room.ID)
	requireCode(t, err, 403, roomnet.CodeKicked)

	members, err := alice.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)
	require.Equal(t, "alice", members[0].Username)
}

func TestJoinKeysAreSingleUseAndExpire(t *testing.T) {
	t.Run("used", func(t *testing.T) {
		t.Parallel()
		h := roomnettest.New(t)
		alice := h.User("alice")
		room := createRoom(t, alice, "keys", 4)
		roomnettest.Node(t, room.Join, "first")
		_, err := roomnettest.StartNode(t, room.Join, "second", 15*time.Second)
		require.Error(t, err, "a single-use key registered a second node")
		members, err := alice.Members(roomnettest.Context(t, 10*time.Second), room.ID)
		require.NoError(t, err)
		require.Len(t, members[0].Nodes, 1)
	})
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Rooms.JoinKeyTTL = time.Second })
		alice := h.User("alice")
		room := createRoom(t, alice, "keys", 4)
		time.Sleep(time.Until(room.Join.ExpiresAt) + 100*time.Millisecond) // waiting for the clock is the test
		_, err := roomnettest.StartNode(t, room.Join, "late", 15*time.Second)
		require.Error(t, err, "an expired key registered a node")
		// A member can still get a fresh key.
		g, err := alice.RenewKey(roomnettest.Context(t, 10*time.Second), room.ID)
		require.NoError(t, err)
		require.NotEqual(t, room.Join.AuthKey, g.AuthKey)
	})
}

func TestFullRoomAndClose(t *testing.T) {
	h := roomnettest.New(t)
	alice, bob, carol := h.User("alice"), h.User("bob"), h.User("carol")
	ctx := roomnettest.Context(t, 90*time.Second)
	room := createRoom(t, alice, "duo", 2)
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	require.NoError(t, host.WaitPeer(ctx, player.IP()))

	_, err := carol.Join(ctx, room.ID, "")
	requireCode(t, err, 409, roomnet.CodeRoomFull)
	_, err = bob.Join(ctx, room.ID, "")
	requireCode(t, err, 409, roomnet.CodeAlreadyMember)

	// Only the host (or an admin) closes; closing removes every node.
	requireCode(t, bob.CloseRoom(ctx, room.ID), 403, roomnet.CodeForbidden)
	require.NoError(t, alice.CloseRoom(ctx, room.ID))
	closed := time.Now()
	eventually(t, 5*time.Second, "closed room's nodes stop", func() error {
		for _, n := range []*node.Node{host, player} {
			if st, err := n.State(ctx); err != nil || st == "Running" {
				return fmt.Errorf("state %s, err %v", st, err)
			}
		}
		return nil
	})
	t.Logf("closed room's nodes stopped after %s", time.Since(closed).Round(time.Millisecond))
	hs := h.Server.Headscale().Client()
	eventually(t, 10*time.Second, "closing removes the room's nodes and Headscale user", func() error {
		nodes, err := hs.ListNodes(ctx, "")
		if err != nil || len(nodes) > 0 {
			return fmt.Errorf("nodes %v, err %v", nodes, err)
		}
		users, err := hs.ListUsers(ctx)
		if err != nil || len(users) > 0 {
			return fmt.Errorf("users %v, err %v", users, err)
		}
		return nil
	})
	t.Logf("closed room's nodes gone from Headscale after %s", time.Since(closed).Round(time.Millisecond))

	_, err = carol.Join(ctx, room.ID, "")
	requireCode(t, err, 410, roomnet.CodeRoomClosed)
	rooms, err := carol.Rooms(ctx, "")
	require.NoError(t, err)
	require.Empty(t, rooms)
}

func TestLeaveRemovesNodeAndHandsHostOver(t *testing.T) {
	h := roomnettest.New(t)
	alice, bob := h.User("alice"), h.User("bob")
	ctx := roomnettest.Context(t, 90*time.Second)
	room := createRoom(t, alice, "handover", 4)
	events, cancel := h.Server.Events.Subscribe(16)
	defer cancel()
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	require.NoError(t, player.WaitPeer(ctx, host.IP()))

	require.NoError(t, alice.Leave(ctx, room.ID))
	eventually(t, 5*time.Second, "player loses the departed host", func() error {
		if st, err := host.State(ctx); err != nil || st == "Running" {
			return fmt.Errorf("departed host still running: %s %v", st, err)
		}
		if ok, _ := player.IsPeer(ctx, host.IP()); ok {
			return errors.New("still peers")
		}
		return nil
	})
	r, err := bob.Room(ctx, room.ID)
	require.NoError(t, err)
	require.Equal(t, "bob", r.Host)
	require.Equal(t, 1, r.Members)

	require.NoError(t, bob.Leave(ctx, room.ID))
	_, err = bob.Room(ctx, room.ID)
	require.NoError(t, err, "a public closed room can still be looked at")
	_, err = alice.Join(ctx, room.ID, "")
	requireCode(t, err, 410, roomnet.CodeRoomClosed)

	var types []string
	for len(types) < 5 {
		select {
		case e := <-events:
			types = append(types, string(e.Type))
		case <-ctx.Done():
			t.Fatalf("events so far: %v", types)
		}
	}
	require.Equal(t, []string{"member_joined", "member_left", "host_changed", "member_left", "room_closed"}, types)
}

func TestTCPThroughputSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a few MB over DERP")
	}
	h := roomnettest.New(t)
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "bulk", 2)
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	ctx := roomnettest.Context(t, 60*time.Second)
	require.NoError(t, player.WaitPeer(ctx, host.IP()))
	ln, err := host.Listen(9000)
	require.NoError(t, err)
	defer ln.Close()
	const size = 4 << 20
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := player.Dial(ctx, "tcp", netip.AddrPortFrom(host.IP(), 9000).String())
	require.NoError(t, err)
	_, err = io.CopyN(c, zeros{}, size)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	select {
	case n := <-got:
		require.EqualValues(t, size, n)
	case <-ctx.Done():
		t.Fatal("transfer did not finish")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

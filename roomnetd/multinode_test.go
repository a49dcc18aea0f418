package roomnetd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/controlplane/headscale"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/derp"
	"github.com/roomnet/roomnet/derp/relay"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// Two roomnetd nodes on one PostgreSQL and one Redis share ONE external
// Headscale (a child this test runs, reached over gRPC on TCP with an API
// key, as operations.md describes) and one standalone relay that admits
// nodes by asking node B's /verify. A room created through node A is
// joined through node B; the members' real tsnet nodes reach each other;
// a kick handled by node B cuts the member registered through node A;
// and both nodes reconciling at once, also while a member joins, remove
// nothing that a member accounts for and leave the policy alone.
func TestTwoNodesShareOneExternalHeadscale(t *testing.T) {
	stores, _ := sharedStores(t)
	mapPath := filepath.Join(t.TempDir(), "derpmap.yaml")
	// Headscale refuses an empty map; the real one is written once the
	// relay knows whom to ask, and Headscale re-reads the file.
	require.NoError(t, derp.WriteMapFile(mapPath, &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		999: {RegionID: 999, RegionCode: "placeholder", Nodes: []*tailcfg.DERPNode{{Name: "999a", RegionID: 999, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none", DERPPort: 9}}},
	}}))
	grpcAddr, serverURL := externalHeadscale(t, mapPath)
	shared := func(s *roomnettest.Settings) {
		stores(s)
		s.Config.Headscale.Mode = "external"
		s.Config.Headscale.Address, s.Config.Headscale.APIKey = grpcAddr, "an-api-key"
		s.Config.Headscale.ServerURL, s.Config.Headscale.Insecure = serverURL, true
		s.Config.DERP.Enabled = false
		// The periodic reconciler runs often, on whichever node holds
		// the lease, beside the passes this test starts by hand.
		s.Config.Rooms.ReconcileInterval = time.Second
	}
	a := roomnettest.New(t, shared)
	b := roomnettest.New(t, shared)

	rl, err := relay.Start(relay.Options{
		Listen: "127.0.0.1:0", STUNListen: "127.0.0.1:0", StateDir: filepath.Join(t.TempDir(), "derp"),
		VerifyURL: b.URL + "/verify", Logger: roomnettest.Logger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { rl.Close() })
	require.NoError(t, derp.WriteMapFile(mapPath, &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		900: {RegionID: 900, RegionCode: "shared", RegionName: "shared relay", Nodes: []*tailcfg.DERPNode{rl.Node(900, "900a")}},
	}}))
	hs, err := headscale.DialRemote(grpcAddr, "an-api-key", true)
	require.NoError(t, err)
	t.Cleanup(func() { hs.Close() })
	ctx := roomnettest.Context(t, 240*time.Second)

	alice, carol := a.User("alice"), a.User("carol")
	bob := b.User("bob")
	aliceOnB, _, err := roomnet.NewClient(b.URL).Login(ctx, "alice", "password-alice")
	require.NoError(t, err)

	room := createRoom(t, alice, "two nodes, one headscale", 4)
	require.Equal(t, serverURL, room.Join.LoginServer, "both nodes send players to the one Headscale")
	bobGrant := join(t, bob, room.ID)
	require.Equal(t, serverURL, bobGrant.LoginServer)
	host := roomnettest.Node(t, room.Join, "mn-host")
	player := roomnettest.Node(t, bobGrant, "mn-player")
	serveEcho(t, host, 7777)
	serveEcho(t, player, 7777)
	eventually(t, 60*time.Second, "the player joined through node b reaches the host of node a's room", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), player, host.IP(), 7777, "b to a")
	})
	require.NoError(t, tcpEcho(ctx, host, player.IP(), 7777, "a to b"))
	peers, err := player.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	require.Equal(t, "shared", peers[0].Relay, "relayed by the shared relay, which admitted both through node b")

	// Both nodes reconcile at the same time, several rounds, while a
	// third member registers through node a: nothing a member accounts
	// for goes, and the policy, set once, is not set again.
	carolGrant := join(t, carol, room.ID)
	var wg sync.WaitGroup
	reps := make(chan service.Report, 16)
	errs := make(chan error, 16)
	stop := make(chan struct{})
	for _, h := range []*roomnettest.Harness{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rep, err := h.Server.Service.Reconcile(ctx)
				if err != nil {
					errs <- err
					return
				}
				select {
				case reps <- rep:
				default:
				}
			}
		}()
	}
	guest := roomnettest.Node(t, carolGrant, "mn-guest")
	serveEcho(t, guest, 7777)
	eventually(t, 60*time.Second, "the member registered during reconciliation reaches the host", func() error {
		return tcpEcho(roomnettest.Context(t, 10*time.Second), guest, host.IP(), 7777, "guest")
	})
	close(stop)
	wg.Wait()
	close(errs)
	close(reps)
	for err := range errs {
		require.NoError(t, err)
	}
	for rep := range reps {
		require.Zero(t, rep.Users+rep.Nodes+rep.Evicted+rep.Abandoned, "a reconciliation removed something a member accounts for: %+v", rep)
		require.False(t, rep.PolicySet, "the nodes fought over the policy")
	}
	policy, err := hs.GetPolicy(ctx)
	require.NoError(t, err)
	require.JSONEq(t, service.IsolationPolicy, policy)
	nodes, err := hs.ListNodes(ctx, "")
	require.NoError(t, err)
	require.Len(t, nodes, 3, "host, player and guest are registered")

	// A kick handled by node b cuts the guest, whose key node a minted.
	require.NoError(t, aliceOnB.Kick(ctx, room.ID, "carol"))
	// What keeps the guest out: the host drops it, and Headscale holds
	// its node no more (expired, then deleted after the cut's grace).
	// Whether the guest's own node hears that it was cut is only logged:
	// once in CI, under load, Headscale did not deliver the expiry to the
	// guest's map stream (the node stayed "Running", deleted, peerless).
	kicked := time.Now()
	eventually(t, 30*time.Second, "the host loses the kicked guest", func() error {
		if ok, err := host.IsPeer(ctx, guest.IP()); err != nil || ok {
			return fmt.Errorf("still a peer (err %v)", err)
		}
		return nil
	})
	eventually(t, 30*time.Second, "Headscale no longer holds the kicked guest's node", func() error {
		held, err := hs.ListNodes(ctx, "")
		if err != nil {
			return err
		}
		for _, n := range held {
			if slices.Contains(n.IPs, guest.IP()) {
				return fmt.Errorf("still held: %+v", n)
			}
		}
		return nil
	})
	st, err := guest.State(ctx)
	t.Logf("%s after the kick: the host dropped the guest, Headscale deleted its node; the guest's node says %s (err %v)", time.Since(kicked).Round(time.Millisecond), st, err)
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	require.Error(t, tcpEcho(dctx, guest, host.IP(), 7777, "after the kick"))
	_, err = carol.Join(ctx, room.ID, "")
	requireCode(t, err, 403, roomnet.CodeKicked)

	// Another round from each node: the kicked guest's node goes if the
	// cut's deletion has not taken it yet; the two members left stay.
	for _, h := range []*roomnettest.Harness{b, a} {
		rep, err := h.Server.Service.Reconcile(ctx)
		require.NoError(t, err)
		require.Zero(t, rep.Users, "%+v", rep)
		require.False(t, rep.PolicySet)
	}
	nodes, err = hs.ListNodes(ctx, "")
	require.NoError(t, err)
	var left []string
	for _, n := range nodes {
		left = append(left, n.NodeKey)
	}
	require.ElementsMatch(t, []string{nodeKey(t, host).String(), nodeKey(t, player).String()}, left)
	require.NoError(t, tcpEcho(ctx, player, host.IP(), 7777, "still together"))
}

package web_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// Members whose client sends no path report (here: bare tsnet nodes, as
// the official client) are shown with the server's view: the pair that
// exchanged packets through the relay is "relayed", marked as seen by the
// server.
func TestAdminShowsServerInferredPaths(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	gus, hal := h.User("gus"), h.User("hal")
	room, err := gus.CreateRoom(ctx, roomnet.CreateRoom{Name: "Inferred", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	grant, err := hal.Join(ctx, room.ID, "")
	require.NoError(t, err)
	ng := roomnettest.Node(t, room.Join, "gus")
	nh := roomnettest.Node(t, grant, "hal")
	require.Eventually(t, func() bool {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := ng.PingPath(pctx, nh.IP())
		if err != nil {
			t.Logf("ping: %v", err)
		}
		return err == nil
	}, 60*time.Second, 200*time.Millisecond, "gus's node reaches hal's")

	tab := profile(t, b)
	signInAdmin(t, tab, h)
	openMembers(t, tab, room.ID, "hal")
	for _, who := range [][2]string{{"gus", "hal"}, {"hal", "gus"}} {
		paths := eval[[]string](t, tab, fmt.Sprintf(`[...document.querySelectorAll('#members tr[data-member=%q] .path')].map((p) => p.dataset.source + '|' + p.textContent)`, who[0]))
		require.NotEmpty(t, paths, who[0])
		for _, p := range paths {
			require.Contains(t, p, "server|"+who[1]+" (100.64.", "%s's path", who[0])
			require.Contains(t, p, "relayed "+h.Config.DERP.RegionCode)
		}
		note := eval[string](t, tab, fmt.Sprintf(`document.querySelector('#members tr[data-member=%q] .path-source').textContent`, who[0]))
		require.Equal(t, "seen by the server", note)
	}
	requireCleanConsole(t, tab)
}

// A pair relayed by a roommate's peer relay is shown as a peer relay, not
// as a DERP region.
func TestAdminShowsAPeerRelayedPath(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	gus, hal := h.User("gus"), h.User("hal")
	room, err := gus.CreateRoom(ctx, roomnet.CreateRoom{Name: "Peer relayed", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = hal.Join(ctx, room.ID, "")
	require.NoError(t, err)
	require.NoError(t, hal.ReportPaths(ctx, room.ID, []roomnet.Link{{Peer: "gus", IP: "100.64.0.1", PeerRelay: true, Addr: "203.0.113.7:40000:vni:7", RTTMS: 4}}))

	tab := profile(t, b)
	signInAdmin(t, tab, h)
	openMembers(t, tab, room.ID, "hal")
	paths := eval[[]string](t, tab, `[...document.querySelectorAll('#members tr[data-member="hal"] .path')].map((p) => p.dataset.source + '|' + p.textContent)`)
	require.Equal(t, []string{"client|gus (100.64.0.1): peer relay 4.0 ms"}, paths)
	requireCleanConsole(t, tab)
}

// openMembers opens a room's members in the admin panel and waits for
// member's paths.
func openMembers(t *testing.T, tab context.Context, roomID, member string) {
	t.Helper()
	run(t, tab, "members", chromedp.Click(chromedp.CSS(`a[data-tab="rooms"]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q] button`, roomID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q] button`, roomID))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#members tr[data-member=%q] .path`, member))))
}

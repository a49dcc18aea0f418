package web_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// The admin panel lists the Headscale shards beside the relays: health,
// open rooms, nodes against the cap and each child's process; the page
// still fits a phone and passes the accessibility checks.
func TestAdminListsShards(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Headscale.Shards = 2
		s.Config.Headscale.ShardNodeCap = 50
	})
	ctx := roomnettest.Context(t, 120*time.Second)
	_, err := h.User("sam").CreateRoom(ctx, roomnet.CreateRoom{Name: "On the first shard", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	tab := profile(t, b)
	signInAdmin(t, tab, h)
	run(t, tab, "shards", chromedp.Click(chromedp.CSS(`a[data-tab="relays"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#shards tr[data-shard="hs-1"]`)))
	rows := eval[[]string](t, tab, `[...document.querySelectorAll('#shards tbody tr')].map((r) =>
		[r.dataset.shard, ...['.health', '.rooms', '.nodes', '.process'].map((c) => r.querySelector(c).textContent)].join('|'))`)
	require.Len(t, rows, 2)
	require.Regexp(t, `^default\|healthy\|1\|[01] / 500 online\|pid \d+ · \d+\.\d s CPU · \d+ MiB$`, rows[0])
	require.Regexp(t, `^hs-1\|healthy\|0\|0 / 500 online\|pid \d+ · `, rows[1])
	// The embedded relay has no heartbeat to show (it was its start time).
	require.Equal(t, []string{"none needed (in this process)"}, eval[[]string](t, tab, `[...document.querySelectorAll('#relays tbody tr')].map((r) => r.querySelector('.last-heartbeat').textContent)`))
	judge(t, tab, "admin-shards")
}

// A shard that stops answering past the grace period is shown lost (its
// rooms moving away) with when it went down; the page says so at both
// widths. It comes back healthy once it answers and is reconciled.
func TestAdminShardsShowALostShard(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Headscale.Shards = 2
		s.Config.Headscale.ShardGrace = time.Second
	})
	sups := h.Server.Shards()
	require.Len(t, sups, 2)
	tab := profile(t, b)
	signInAdmin(t, tab, h)
	run(t, tab, "shards", chromedp.Click(chromedp.CSS(`a[data-tab="relays"]`)),
		waitJS(`(document.querySelector('#shards tr[data-shard="hs-1"] .state') || {}).textContent === 'healthy'`))

	pid := sups[1].PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	run(t, tab, "lost", waitJS(`(document.querySelector('#shards tr[data-shard="hs-1"] .state') || {}).textContent === 'lost: rooms moving'`))
	health := eval[string](t, tab, `document.querySelector('#shards tr[data-shard="hs-1"] .health').textContent`)
	require.Contains(t, health, "down since")
	require.Equal(t, "healthy", eval[string](t, tab, `document.querySelector('#shards tr[data-shard="default"] .state').textContent`))
	judge(t, tab, "admin-shard-lost")

	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	resumed = true
	run(t, tab, "back", waitJS(`(document.querySelector('#shards tr[data-shard="hs-1"] .state') || {}).textContent === 'healthy'`))
	require.NotContains(t, eval[string](t, tab, `document.querySelector('#shards tr[data-shard="hs-1"] .health').textContent`), "down since")
	requireCleanConsole(t, tab)
}

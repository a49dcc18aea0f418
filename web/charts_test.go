package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// The dashboard's charts have axes (0, a middle and a rounded top; the
// range's start, middle and "now") and a time range. With a sample every
// 3 s the server keeps 18 minutes of samples: 15 minutes are drawn from
// them, an hour and a day from its minute points.
func TestAdminChartsHaveAxesAndARange(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Web.FiguresInterval = 3 * time.Second })
	ctx := roomnettest.Context(t, 120*time.Second)
	ivy := h.User("ivy")
	for _, name := range []string{"Alpha", "Bravo", "Charlie"} {
		_, err := ivy.CreateRoom(ctx, roomnet.CreateRoom{Name: name, MaxPlayers: 4, Public: true})
		require.NoError(t, err)
	}
	tab := profile(t, b)
	signInAdmin(t, tab, h)
	run(t, tab, "15 minutes", chromedp.SetValue(chromedp.CSS("#figures-range"), "15m"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#figures-range').dispatchEvent(new Event('input'))`),
		waitJS(`document.querySelector('#figures').dataset.step === '3'`))
	// The dashboard redraws every 5 s.
	run(t, tab, "samples drawn", waitJS(`Number(document.querySelector('#figures .figure[data-figure="rooms_open"]').dataset.points) >= 3`))
	type axes struct {
		Y, X    []string
		Line    bool
		Caption string
	}
	read := func() axes {
		return eval[axes](t, tab, `(() => { const f = document.querySelector('#figures .figure[data-figure="rooms_open"]');
		  return { Y: [...f.querySelectorAll('.y-axis span')].map((s) => s.textContent), X: [...f.querySelectorAll('.x-axis span')].map((s) => s.textContent),
		    Line: f.querySelector('svg polyline') !== null, Caption: f.querySelector('figcaption').textContent }; })()`)
	}
	a := read()
	require.Equal(t, []string{"5", "2.5", "0"}, a.Y, "three rooms: the top rounds up to 5")
	require.Len(t, a.X, 3)
	require.Equal(t, "now", a.X[2])
	require.True(t, a.Line)
	require.Contains(t, a.Caption, "Rooms open over the last 15 min")
	judge(t, tab, "admin-charts-15m")

	atWidth(t, tab, 1366, 900)
	run(t, tab, "24 hours", chromedp.SetValue(chromedp.CSS("#figures-range"), "24h"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#figures-range').dispatchEvent(new Event('input'))`),
		waitJS(`document.querySelector('#figures').dataset.step === '60'`))
	a = read()
	require.Equal(t, "now", a.X[2])
	require.Contains(t, a.Caption, "over the last 24 h")
	require.NotEqual(t, a.X[0], a.X[1], "the axis spans the day")
	shot(t, tab, "admin-charts-24h")

	run(t, tab, "an hour", chromedp.SetValue(chromedp.CSS("#figures-range"), "1h"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#figures-range').dispatchEvent(new Event('input'))`),
		waitJS(`document.querySelector('#figures').dataset.step === '60' && document.querySelector('#figures figcaption').textContent.includes('over the last hour')`))
	require.True(t, read().Line, "the minute being filled and now make a line")
	judge(t, tab, "admin-charts-1h")
	requireCleanConsole(t, tab)
}

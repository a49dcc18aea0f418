package web_test

import (
	"context"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/roomnet/roomnet/roomnettest"
)

// pageLoad is what one load of a page cost, as the browser measured it.
type pageLoad struct {
	Requests int     `json:"requests"`
	Transfer float64 `json:"transfer"` // bytes on the wire: headers and (compressed) bodies
	Decoded  float64 `json:"decoded"`  // bytes of the bodies as used
	FCP      float64 `json:"fcp"`      // first contentful paint, ms after navigation start
	Ready    float64 `json:"ready"`    // the page's own "ready" condition, ms after navigation start
}

const measure = `(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').filter((r) => r.name.includes('/static/'));
  const fcp = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
  return {
    requests: 1 + res.length,
    transfer: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
    decoded: nav.decodedBodySize + res.reduce((n, r) => n + r.decodedBodySize, 0),
    fcp: fcp ? fcp.startTime : 0,
    ready: performance.now(),
  };
})()`

// BenchmarkPageLoad loads each page in Chromium from the harness, cold
// (cache off) and warm (revalidated from the cache), and reports the
// bytes on the wire and the time to first contentful paint and to the
// page being usable (signed-in pages: chat online, lists drawn).
//
//	go test -run '^$' -bench BenchmarkPageLoad -benchtime 20x ./web
func BenchmarkPageLoad(b *testing.B) {
	br := browser(b)
	h := roomnettest.New(b)
	h.User("bench")
	player := profile(b, br)
	signInLobby(b, player, h.URL, "bench", "password-bench")
	admin := profile(b, br)
	signInAdmin(b, admin, h)
	anon := profile(b, br)
	pages := []struct {
		name, path, ready string
		tab               context.Context
	}{
		{"lobby-signin", "/", `!document.querySelector('#signin').hidden`, anon},
		{"lobby", "/", `(document.querySelector('#chat-status') || {}).textContent === 'online' && window.roomnetLobby && window.roomnetLobby.renders > 0`, player},
		{"admin", "/admin", `document.querySelector('#live').textContent === 'live' && document.querySelectorAll('#figures .figure').length === 6`, admin},
	}
	for _, p := range pages {
		for _, cold := range []bool{true, false} {
			name := p.name + "/warm"
			if cold {
				name = p.name + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				run(b, p.tab, "cache", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
					_, err := cdp.Call(ctx, t, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: cold})
					return err
				}), chromedp.Navigate(h.URL+p.path), waitJS(p.ready))
				var sum pageLoad
				for b.Loop() {
					run(b, p.tab, "load", chromedp.Navigate(h.URL+p.path), waitJS(p.ready))
					m := eval[pageLoad](b, p.tab, measure)
					sum.Requests += m.Requests
					sum.Transfer += m.Transfer
					sum.Decoded += m.Decoded
					sum.FCP += m.FCP
					sum.Ready += m.Ready
				}
				n := float64(b.N)
				b.ReportMetric(float64(sum.Requests)/n, "requests")
				b.ReportMetric(sum.Transfer/n/1024, "KiB-wire")
				b.ReportMetric(sum.Decoded/n/1024, "KiB-decoded")
				b.ReportMetric(sum.FCP/n, "ms-fcp")
				b.ReportMetric(sum.Ready/n, "ms-ready")
			})
		}
	}
}

package chatserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
)

// In a storm, subscribers that answer the same notify from the same
// position get the same page: it holds messages up to what the notify
// announced (not whatever was committed when each pull arrived), so it
// is built once and the others are answered from the cache.
func TestStormPullsAreCappedAndShared(t *testing.T) {
	srv := startServer(t, Options{StormEnter: 40, StormExit: 20, StormWindow: 500 * time.Millisecond, NotifyInterval: 300 * time.Millisecond})
	const lobby = "lobby:shared"
	const n = 5
	subs := make([]*rawClient, n)
	for i := range subs {
		subs[i] = dialRaw(t, srv.url, "u"+string(rune('1'+i)), nil)
		subs[i].send(t, chat.Frame{Type: chat.TypeJoin, Conv: lobby, Ref: "j"})
	}
	// The publisher is a raw client: an SDK would pull on every notify
	// too, and its pages would count with the subscribers' below.
	pub := dialRaw(t, srv.url, "u9", nil)
	pub.send(t, chat.Frame{Type: chat.TypeJoin, Conv: lobby, Ref: "pj"})
	pub.answer(t, "pj")
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / 2000)
		defer tick.Stop()
		for i := range 3000 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			b, _ := chat.Encode(chat.Frame{Type: chat.TypeSend, Conv: lobby, ClientMsgID: fmt.Sprint("storm-", i), Body: "storm"})
			if pub.ws.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	waitFor(t, 5*time.Second, "storm mode", func() bool { return srv.Stats().Storms == 1 })

	notifies := func(c *rawClient) (int, uint64) {
		k, top := 0, uint64(0)
		for _, f := range c.snapshot() {
			if f.Type == chat.TypeNotify {
				k, top = k+1, max(top, f.Seq)
			}
		}
		return k, top
	}
	// Right after a notify, everyone pulls from the same position.
	k0, _ := notifies(subs[0])
	waitFor(t, 5*time.Second, "a fresh notify for everyone", func() bool {
		for _, c := range subs {
			if k, _ := notifies(c); k <= k0 {
				return false
			}
		}
		return true
	})
	_, announced := notifies(subs[0])
	built := testutil.ToFloat64(srv.metrics.pulls.WithLabelValues("built"))
	for _, c := range subs {
		c.send(t, chat.Frame{Type: chat.TypePull, Conv: lobby, After: 1, Limit: 1000})
	}
	pages := func() []chat.Frame {
		var out []chat.Frame
		for _, c := range subs {
			for _, f := range c.snapshot() {
				if f.Type == chat.TypePage && f.Ref == chat.TypePull {
					out = append(out, f)
				}
			}
		}
		return out
	}
	waitFor(t, 5*time.Second, "every pull answered", func() bool { return len(pages()) == n })
	var tops []uint64
	for _, p := range pages() {
		tops = append(tops, p.Messages[len(p.Messages)-1].Seq)
	}
	for _, top := range tops {
		if top != tops[0] {
			t.Fatalf("pages from the same position end at different seqs %v: not one shared page", tops)
		}
	}
	// The page ends exactly at an announced seq (the one of the notify
	// just answered, or of one sent while the pulls were on their way).
	waitFor(t, 2*time.Second, "the page's end to be an announced seq", func() bool {
		for _, f := range subs[0].snapshot() {
			if f.Type == chat.TypeNotify && f.Seq == tops[0] {
				return true
			}
		}
		return false
	})
	if tops[0] < announced {
		t.Fatalf("the page ends at %d, before the notify answered (%d)", tops[0], announced)
	}
	if b := testutil.ToFloat64(srv.metrics.pulls.WithLabelValues("built")) - built; b > 2 {
		t.Fatalf("%v pages built for %d identical pulls; want one (two if a notify fell between)", b, n)
	}
}

// A critical message pushed during a storm reaches the SDK's user at once,
// in order: the SDK fills the gap before it straight away instead of
// waiting for the next notify (3 s here) or its gap timeout (10 s here).
func TestCriticalReachesTheSDKUserDuringAStorm(t *testing.T) {
	srv := startServer(t, Options{StormEnter: 40, StormExit: 20, StormWindow: 500 * time.Millisecond, NotifyInterval: 3 * time.Second})
	const lobby = "lobby:critical"
	reader := dialSDK(t, srv.url, "u1", func(o *chatclient.Options) { o.GapTimeout = 10 * time.Second })
	got := collectTexts(t, reader, lobby)
	pub := dialSDK(t, srv.url, "u2", nil)
	discardEvents(t, pub)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []*chatclient.Client{reader, pub} {
		if err := c.Join(ctx, lobby); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); publish(t, pub, lobby, 1600, 400, "storm") }()
	defer func() { <-done }()
	waitFor(t, 5*time.Second, "storm mode", func() bool { return srv.Stats().Storms == 1 })
	time.Sleep(500 * time.Millisecond) // storm messages pile up unpushed before the notice
	seq, err := srv.Announce(ctx, lobby, "the lobby closes in 5 minutes")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 2*time.Second, "the critical notice, in order", func() bool {
		for _, m := range got() {
			if m.Seq == seq {
				return true
			}
		}
		return false
	})
	msgs := got()
	for i, m := range msgs {
		if m.Seq == seq && (i == 0 || msgs[i-1].Seq != seq-1) {
			t.Fatalf("the notice came without the %d messages before it", seq-1)
		}
	}
	t.Logf("critical notice shown %v after it was stored, with %d storm messages before it", time.Since(start).Round(time.Millisecond), len(msgs)-1)
}

package web_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/roomnettest"
)

// The browser client's ordering, dedupe, gap fill, deletes and retry
// rules, run in Chromium on crafted frames (no network): a duplicated,
// reordered and gapped stream comes out once and in order, the gap is
// filled with a pull after the contiguous position, a delete that
// overtakes its message hides it, and an unacknowledged send is retried
// with the same client message id.
func TestBrowserClientOrdersDedupesAndFillsGaps(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	tab := profile(t, b)
	run(t, tab, "load", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")))
	script := `(async () => {
	  const { ChatClient } = await import('/static/chat.js');
	  const c = new ChatClient({ storage: sessionStorage, gapTimeout: 100 });
	  const out = [], sent = [], deleted = [];
	  let open = true;
	  Object.defineProperty(c, 'connected', { get: () => open });
	  c.write = (f) => { sent.push(f); return open; };
	  c.addEventListener('message', (e) => out.push(e.detail.msg.seq));
	  c.addEventListener('deleted', (e) => deleted.push(e.detail.seq));
	  const m = (seq, kind = 'text') => ({ conv: 'lobby:t', seq, kind, body: 'b' + seq, from: 'x', ts: 1 });
	  c.handle({ type: 'hello', hello: { user: 'me', user_id: 4242, convs: [] } });
	  c.handle({ type: 'joined', conv: 'lobby:t', seq: 2, ref: 'join:lobby:t' });
	  const pulls = () => sent.filter((f) => f.type === 'pull').map((f) => f.after);
	  const first = pulls(); // backfill below the join position
	  c.handle({ type: 'page', ref: 'pull', conv: 'lobby:t', after: 0, messages: [m(1), m(2)] });
	  // duplicated, reordered, a tombstone, a gap at 6
	  for (const s of [4, 3, 4, 2, 3]) c.handle({ type: 'msg', msg: m(s) });
	  c.handle({ type: 'msg', msg: m(5, 'tombstone') });
	  c.handle({ type: 'deleted', conv: 'lobby:t', seq: 8 }); // overtakes seq 8
	  c.handle({ type: 'msg', msg: m(7) });
	  c.handle({ type: 'msg', msg: m(8) });
	  const beforeFill = [...out];
	  await new Promise((r) => setTimeout(r, 250));
	  c.tick();
	  const fill = pulls().slice(first.length);
	  c.handle({ type: 'page', ref: 'pull', conv: 'lobby:t', after: 5, messages: [m(6), m(7), m(8)] });
	  c.handle({ type: 'deleted', conv: 'lobby:t', seq: 3 });
	  // a send, unacknowledged: retried with the same id after the backoff
	  const id = c.send('lobby:t', 'hello');
	  const p = c.pending.get(id); p.due = Date.now() - 1; c.tick();
	  const sends = sent.filter((f) => f.type === 'send' && f.client_msg_id === id).length;
	  c.handle({ type: 'sent', ref: id, conv: 'lobby:t', seq: 9 });
	  const stored = JSON.parse(sessionStorage.getItem('roomnet.chat.v1.4242'));
	  c.close();
	  return { first, beforeFill, fill, out, deleted, sends, pendingLeft: c.pending.size, dups: c.stats.duplicates,
	           stored: stored.positions['lobby:t'] };
	})()`
	got := eval[struct {
		First      []int `json:"first"`
		BeforeFill []int `json:"beforeFill"`
		Fill       []int `json:"fill"`
		Out        []int `json:"out"`
		Deleted    []int `json:"deleted"`
		Sends      int   `json:"sends"`
		Pending    int   `json:"pendingLeft"`
		Dups       int   `json:"dups"`
		Stored     int   `json:"stored"`
	}](t, tab, script)
	require.Equal(t, []int{0}, got.First, "a new lobby backfills from below its join position")
	require.Equal(t, []int{1, 2, 3, 4}, got.BeforeFill, "in order, once; nothing past the gap at 6")
	require.Equal(t, []int{5}, got.Fill, "the gap is filled with a pull after the contiguous position")
	require.Equal(t, []int{1, 2, 3, 4, 6, 7}, got.Out, "the tombstone and the deleted 8 are not shown")
	require.Equal(t, []int{3}, got.Deleted, "a delete of a shown message is reported")
	require.Equal(t, 2, got.Sends, "resent once with the same client message id")
	require.Zero(t, got.Pending, "the ack settles it")
	require.Equal(t, 5, got.Dups, "4, 2 and 3 pushed again, then 7 and 8 again in the page")
	require.Equal(t, 8, got.Stored, "the position is kept for the next visit")
}

// The browser client's flow control (issue 19), on crafted frames: at
// most window sends unacknowledged, the rest queued in order; sends paced
// within the budget hello announced; a rate_limited answer pauses all
// sends for its retry_after_ms and is no failure; many resends fail
// nothing, only sendTimeout of waiting while connected does.
func TestBrowserClientPacesSendsWithinTheBudget(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	tab := profile(t, b)
	run(t, tab, "load", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")))
	script := `(async () => {
	  const { ChatClient } = await import('/static/chat.js');
	  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
	  let uid = 5000;
	  const client = (opts, hello) => {
	    const c = new ChatClient({ storage: sessionStorage, ...opts });
	    c.sent = [];
	    Object.defineProperty(c, 'connected', { get: () => true });
	    c.write = (f) => { c.frames.take(Date.now()); c.sent.push(f); return true; };
	    c.failed = [];
	    c.addEventListener('failed', (e) => c.failed.push(e.detail.code));
	    c.handle({ type: 'hello', hello: { user: 'me', user_id: ++uid, convs: [], ...hello } });
	    return c;
	  };
	  const sends = (c) => c.sent.filter((f) => f.type === 'send').map((f) => f.body);
	  const big = { frames_per_sec: 1000, frames_burst: 1000, send_per_sec: 1000, send_burst: 1000 };

	  // The window: 3 of 10 leave, in order; an ack lets one more go.
	  const w = client({ window: 3 }, big);
	  const ids = [];
	  for (let i = 0; i < 10; i++) ids.push(w.send('lobby:t', 'm' + i));
	  const windowed = sends(w);
	  w.handle({ type: 'sent', ref: ids[0], conv: 'lobby:t', seq: 1 });
	  const slid = sends(w);
	  // rate_limited on m1 with a 300 ms hint: nothing leaves meanwhile,
	  // not even after another ack; then m1 again and the rest.
	  w.handle({ type: 'error', ref: ids[1], conv: 'lobby:t', error: { code: 'rate_limited', message: 'slow', retry_after_ms: 300 } });
	  w.handle({ type: 'sent', ref: ids[2], conv: 'lobby:t', seq: 2 });
	  w.tick();
	  const held = sends(w).length;
	  await sleep(350);
	  w.tick();
	  const resumed = sends(w).slice(held);
	  w.close();

	  // Pacing: frames 10/s burst 4 announced: the client keeps 8/s, 2 at once.
	  const p = client({}, { frames_per_sec: 10, frames_burst: 4, send_per_sec: 1000, send_burst: 1000 });
	  for (let i = 0; i < 20; i++) p.send('lobby:t', 'p' + i);
	  const atOnce = sends(p).length;
	  await sleep(1000);
	  p.tick();
	  const inASecond = sends(p).length;
	  p.close();

	  // Resends fail nothing; sendTimeout of waiting does.
	  const f = client({ sendTimeout: 400 }, big);
	  f.send('lobby:t', 'void');
	  const p0 = [...f.pending.values()][0];
	  for (let i = 0; i < 20; i++) { p0.due = 0; f.tick(); }
	  const failedEarly = f.failed.length;
	  for (let i = 0; i < 12; i++) { await sleep(50); f.tick(); }
	  f.close();
	  return { windowed, slid, held, resumed, atOnce, inASecond, failedEarly, failed: f.failed, tries: p0.tries,
	           limited: w.stats.rateLimited };
	})()`
	got := eval[struct {
		Windowed    []string `json:"windowed"`
		Slid        []string `json:"slid"`
		Held        int      `json:"held"`
		Resumed     []string `json:"resumed"`
		AtOnce      int      `json:"atOnce"`
		InASecond   int      `json:"inASecond"`
		FailedEarly int      `json:"failedEarly"`
		Failed      []string `json:"failed"`
		Tries       int      `json:"tries"`
		Limited     int      `json:"limited"`
	}](t, tab, script)
	require.Equal(t, []string{"m0", "m1", "m2"}, got.Windowed, "three in flight, in order")
	require.Equal(t, []string{"m0", "m1", "m2", "m3"}, got.Slid, "an ack lets the next one go")
	require.Equal(t, 4, got.Held, "nothing leaves during the rate_limited pause")
	require.Equal(t, []string{"m1", "m4"}, got.Resumed, "m1 again, then the window fills (m3 is not due yet)")
	require.Equal(t, 1, got.Limited)
	require.Equal(t, 1, got.AtOnce, "half the announced burst at once, less the sync frame")
	require.InDelta(t, 1+8, got.InASecond, 2, "then 80%% of the announced rate")
	require.Zero(t, got.FailedEarly, "21 sends of one message fail nothing")
	require.Greater(t, got.Tries, 20)
	require.Equal(t, []string{"timeout"}, got.Failed, "sendTimeout of waiting does")
}

// The browser's heartbeat interval and backoff are the Go SDK's.
func TestBrowserClientTimingMatchesTheGoSDK(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	tab := profile(t, b)
	run(t, tab, "load", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")))
	for _, c := range []struct{ srtt, rttvar time.Duration }{{0, 0}, {20 * time.Millisecond, 5 * time.Millisecond}, {250 * time.Millisecond, 0},
		{400 * time.Millisecond, 100 * time.Millisecond}, {2 * time.Second, time.Second}} {
		js := eval[float64](t, tab, fmt.Sprintf(`import('/static/chat.js').then((m) => m.interval(%d, %d))`, c.srtt.Milliseconds(), c.rttvar.Milliseconds()))
		goMS := float64(chat.HeartbeatInterval(c.srtt, c.rttvar)) / float64(time.Millisecond)
		require.InDelta(t, goMS, js, 1, "interval at srtt %v rttvar %v", c.srtt, c.rttvar)
	}
	for n, want := range map[int]float64{1: 500, 2: 1000, 3: 2000, 4: 4000, 5: 8000, 9: 8000} {
		lo := eval[float64](t, tab, fmt.Sprintf(`import('/static/chat.js').then((m) => m.delay(%d, m.Backoff, () => 0))`, n))
		hi := eval[float64](t, tab, fmt.Sprintf(`import('/static/chat.js').then((m) => m.delay(%d, m.Backoff, () => 1))`, n))
		require.InDelta(t, want*0.8, lo, 0.01, "attempt %d", n)
		require.InDelta(t, want*1.2, hi, 0.01, "attempt %d", n)
	}
}

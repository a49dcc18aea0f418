package chatserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/chat"
)

// countAnswers counts error answers of code among r's frames and reports
// the largest retry_after_ms they carried; every one must carry a hint.
func countAnswers(t *testing.T, r *rawClient, code, refPrefix string) (n int, maxAfter int64) {
	t.Helper()
	for _, f := range r.snapshot() {
		if f.Type == chat.TypeError && f.Error.Code == code && strings.HasPrefix(f.Ref, refPrefix) {
			n++
			if f.Error.RetryAfterMS < 1 {
				t.Fatalf("%s answer without retry_after_ms: %+v", code, f.Error)
			}
			maxAfter = max(maxAfter, f.Error.RetryAfterMS)
		}
	}
	return n, maxAfter
}

// The frame budget is announced in hello; frames over it are answered
// rate_limited with a retry hint computed from the bucket, and a
// connection is closed with 4003 only once more than MaxViolations
// refusals are outstanding, one being forgiven every ViolationEvery
// (issue 19).
func TestFrameBudgetAnnouncedAndGraceBeforeClose(t *testing.T) {
	srv := startServer(t, Options{FramesPerSec: 2, FramesBurst: 5, SendPerSec: 1, SendBurst: 1,
		MaxViolations: 5, ViolationEvery: 50 * time.Millisecond})
	r := dialRaw(t, srv.url, "u1", nil)
	hello, _ := r.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	if h := hello.Hello; h.FramesPerSec != 2 || h.FramesBurst != 5 || h.SendPerSec != 1 || h.SendBurst != 1 {
		t.Fatalf("hello announces frames %v/%d, sends %d/%d; want 2/5, 1/1", h.FramesPerSec, h.FramesBurst, h.SendPerSec, h.SendBurst)
	}

	// The user's send rate: the second send is refused with a hint of at
	// most a second (one send a second) and is not a violation.
	r.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r1", ClientMsgID: "s1", Body: "one"})
	r.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r1", ClientMsgID: "s2", Body: "two"})
	if f := r.answer(t, "s1"); f.Type != chat.TypeSent {
		t.Fatalf("first send: %+v", f)
	}
	f := r.answer(t, "s2")
	if f.Type != chat.TypeError || f.Error.Code != chat.ErrRateLimited || f.Error.RetryAfterMS < 1 || f.Error.RetryAfterMS > 1000 {
		t.Fatalf("second send: %+v, want rate_limited with retry_after_ms in 1..1000", f.Error)
	}

	// Three frames over the budget: answered, not closed; the hint is
	// at most the time one token takes (500 ms).
	time.Sleep(3 * time.Second) // the bucket refills
	for i := range 8 {
		r.send(t, chat.Frame{Type: chat.TypePing, Ref: fmt.Sprintf("p%d", i), TS: 1})
	}
	r.await(t, 0, "the last ping's answer", func(f chat.Frame) bool { return f.Ref == "p7" })
	n, after := countAnswers(t, r, chat.ErrRateLimited, "p")
	if n < 2 || after > 500 { // at least 2 of the pings (a token may have come back meanwhile)
		t.Fatalf("%d rate_limited answers, largest hint %d ms; want ≥ 2 and ≤ 500", n, after)
	}

	// Refusals spread out are forgiven: 5 rounds of 3 refused frames
	// (15 > MaxViolations) leave the connection open.
	for round := range 5 {
		time.Sleep(600 * time.Millisecond)
		for i := range 3 {
			r.send(t, chat.Frame{Type: chat.TypePing, Ref: fmt.Sprintf("q%d-%d", round, i), TS: 1})
		}
	}
	r.await(t, 0, "the answer to q4-2", func(f chat.Frame) bool { return f.Ref == "q4-2" })
	if n, _ := countAnswers(t, r, chat.ErrRateLimited, "q"); n < 6 {
		t.Fatalf("%d of 15 frames refused, want more than MaxViolations", n)
	}
}

// A client that keeps sending over the budget after its grace of
// MaxViolations answered refusals is closed with 4003.
func TestFloodOverBudgetClosedAfterGrace(t *testing.T) {
	srv := startServer(t, Options{FramesPerSec: 0.1, FramesBurst: 1, MaxViolations: 5, ViolationEvery: time.Hour})
	r := dialRaw(t, srv.url, "u1", nil)
	r.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	for i := range 6 {
		r.send(t, chat.Frame{Type: chat.TypePing, Ref: fmt.Sprintf("p%d", i), TS: 1})
	}
	r.await(t, 0, "the answer to p5", func(f chat.Frame) bool { return f.Ref == "p5" })
	if n, after := countAnswers(t, r, chat.ErrRateLimited, "p"); n != 5 || after < 9000 {
		t.Fatalf("%d rate_limited answers, hint %d ms; want 5 and about 10 s", n, after)
	}
	r.send(t, chat.Frame{Type: chat.TypePing, Ref: "over", TS: 1})
	<-r.done
	if code := closeCodeOf(r.err); code != chat.ClosePolicy {
		t.Fatalf("closed with %d (%v), want %d", code, r.err, chat.ClosePolicy)
	}
}

// A client that keeps within the announced budget for longer than
// MaxViolations refusals would take is never refused nor closed.
func TestClientWithinBudgetIsNeverRefused(t *testing.T) {
	srv := startServer(t, Options{FramesPerSec: 20, FramesBurst: 10, MaxViolations: 1, ViolationEvery: time.Hour})
	r := dialRaw(t, srv.url, "u1", nil)
	r.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	// 10 at once (the burst), then 18 a second for 2 s.
	for i := range 10 {
		r.send(t, chat.Frame{Type: chat.TypePing, Ref: fmt.Sprintf("b%d", i), TS: 1})
	}
	tick := time.NewTicker(time.Second / 18)
	defer tick.Stop()
	for i := range 36 {
		<-tick.C
		r.send(t, chat.Frame{Type: chat.TypePing, Ref: fmt.Sprintf("p%d", i), TS: 1})
	}
	r.await(t, 0, "the last answer", func(f chat.Frame) bool { return f.Ref == "p35" })
	if n, _ := countAnswers(t, r, chat.ErrRateLimited, ""); n != 0 {
		t.Fatalf("%d frames within the budget refused", n)
	}
}

func closeCodeOf(err error) int {
	var code int
	if ce, ok := err.(interface{ Error() string }); ok {
		_, _ = fmt.Sscanf(ce.Error(), "websocket: close %d", &code)
	}
	return code
}

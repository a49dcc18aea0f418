package chatclient_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/chat/internal/faultproxy"
	"github.com/roomnet/roomnet/roomnettest"
)

// wire records a client's frames with their times.
type wire struct {
	mu     sync.Mutex
	frames []wireFrame
}

type wireFrame struct {
	at   time.Time
	sent bool
	f    chat.Frame
}

func (w *wire) trace(sent bool, b []byte) {
	f, err := chat.DecodeServer(b)
	if err != nil {
		return
	}
	w.mu.Lock()
	w.frames = append(w.frames, wireFrame{time.Now(), sent, f})
	w.mu.Unlock()
}

func (w *wire) snapshot() []wireFrame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wireFrame(nil), w.frames...)
}

func results(t *testing.T, ps []*chatclient.Pending) {
	t.Helper()
	seen := map[uint64]bool{}
	for _, p := range ps {
		seq, err := p.Result()
		require.NoError(t, err)
		require.False(t, seen[seq], "seq %d acked twice", seq)
		seen[seq] = true
	}
}

// A burst far over the user's send rate is sent in order, at most
// Window unacknowledged at a time, paced within the budgets hello
// announced: never refused, never failed (issue 19).
func TestSendsArePacedWithinTheAnnouncedBudget(t *testing.T) {
	h := roomnettest.New(t) // send_per_sec 10 (burst 20), frames_per_sec 50 (burst 100)
	ctx := roomnettest.Context(t, 60*time.Second)
	var w wire
	cl := dial(t, wsURL(h), h.User("alice"), func(o *chatclient.Options) {
		o.Window = 4
		o.Trace = w.trace
	})
	require.NoError(t, cl.Join(ctx, "lobby:main"))
	start := time.Now()
	var ps []*chatclient.Pending
	for i := range 30 {
		ps = append(ps, cl.Send("lobby:main", fmt.Sprintf("burst %d", i)))
	}
	require.Positive(t, cl.Queued())
	results(t, ps)
	took := time.Since(start)
	require.Zero(t, cl.Queued())

	st := cl.Stats()
	require.Zero(t, st.RateLimited, "a paced client is never refused")
	require.Zero(t, st.Failed)
	inFlight, most := map[string]bool{}, 0
	var order []string
	for _, fr := range w.snapshot() {
		switch {
		case fr.sent && fr.f.Type == chat.TypeSend:
			if !inFlight[fr.f.ClientMsgID] {
				order = append(order, fr.f.Body)
			}
			inFlight[fr.f.ClientMsgID] = true
			most = max(most, len(inFlight))
		case !fr.sent && fr.f.Type == chat.TypeSent:
			delete(inFlight, fr.f.Ref)
		case !fr.sent && fr.f.Type == chat.TypeError:
			t.Fatalf("refused: %+v", fr.f.Error)
		}
	}
	require.LessOrEqual(t, most, 4, "more sends in flight than the window")
	for i, body := range order[:30] {
		require.Equal(t, fmt.Sprintf("burst %d", i), body, "first sends leave in order")
	}
	// 10 at once (half the burst), then 8 a second (80 % of the rate).
	require.Greater(t, took, 2*time.Second, "30 sends at 10/s burst 20 cannot be acked sooner when paced")
}

// Two connections of one user share its send rate, which neither can
// see: the server refuses some sends with rate_limited and a hint; each
// client pauses for the hint and sends them again, and none fails.
func TestRateLimitedPausesTheClientAndIsNotAFailure(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	alice := h.User("alice")
	var wires [2]wire
	var cls [2]*chatclient.Client
	for i := range cls {
		cls[i] = dial(t, wsURL(h), alice, func(o *chatclient.Options) {
			o.Trace = wires[i].trace
			o.SendTimeout = 5 * time.Second // the pauses do not count
		})
		require.NoError(t, cls[i].Join(ctx, "lobby:main"))
	}
	var ps []*chatclient.Pending
	for i := range 40 {
		for j, cl := range cls {
			ps = append(ps, cl.Send("lobby:main", fmt.Sprintf("c%d #%d", j, i)))
		}
	}
	results(t, ps)
	limited := 0
	for i, cl := range cls {
		st := cl.Stats()
		require.Zero(t, st.Failed)
		limited += st.RateLimited
		// After a rate_limited answer with a hint, no send leaves before
		// the hint is over (20 ms of slack for sends already on their way).
		frames := wires[i].snapshot()
		for k, fr := range frames {
			if fr.sent || fr.f.Type != chat.TypeError || fr.f.Error.Code != chat.ErrRateLimited {
				continue
			}
			after := time.Duration(fr.f.Error.RetryAfterMS) * time.Millisecond
			require.Positive(t, after, "rate_limited without retry_after_ms")
			for _, later := range frames[k+1:] {
				if later.sent && later.f.Type == chat.TypeSend {
					if gap := later.at.Sub(fr.at); gap > 20*time.Millisecond && gap < after-5*time.Millisecond {
						t.Fatalf("client %d sent %v after a rate_limited hint of %v", i, gap, after)
					}
				}
			}
		}
	}
	require.Positive(t, limited, "two connections at 8/s each must have met the user's 10/s")
}

// A message fails for a reason the user can act on at once, and
// otherwise only after SendTimeout of waiting while connected, however
// many times it was sent meanwhile.
func TestSendFailsByReasonOrTimeNotAttempts(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	proxy, err := faultproxy.New(wsURL(h))
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cl := dial(t, proxy.URL(), h.User("alice"), func(o *chatclient.Options) {
		o.SendTimeout = 1500 * time.Millisecond
		o.SendBackoff = chatclient.Backoff{Initial: 100 * time.Millisecond, Factor: 1, Max: 100 * time.Millisecond}
		o.MaxAttempts = 2 // ignored
	})
	require.NoError(t, cl.Join(ctx, "lobby:main"))

	_, err = cl.Send("lobby:main", strings.Repeat("x", 5000)).Result()
	require.ErrorContains(t, err, chat.ErrTooLarge)

	// Every frame to the server is lost: the message is sent again and
	// again and fails only after SendTimeout.
	proxy.Set(faultproxy.Faults{Drop: 1}, faultproxy.Faults{})
	start := time.Now()
	_, err = cl.Send("lobby:main", "into the void").Result()
	require.ErrorIs(t, err, chatclient.ErrSendFailed)
	require.Greater(t, time.Since(start), 1400*time.Millisecond)
	require.Greater(t, cl.Stats().Resends, 5)
}

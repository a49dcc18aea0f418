package chatserver

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// usersDirectory knows tokens "u<N>" as user N, each a member of room r1.
type usersDirectory struct{}

func (usersDirectory) Authenticate(_ context.Context, token string) (User, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(token, "u"), 10, 64)
	if err != nil || !strings.HasPrefix(token, "u") || id == 0 {
		return User{}, fmt.Errorf("bad token")
	}
	return User{ID: id, Name: token}, nil
}
func (d usersDirectory) UserByName(ctx context.Context, name string) (User, error) {
	u, err := d.Authenticate(ctx, name)
	if err != nil {
		return User{}, ErrNoUser
	}
	return u, nil
}
func (usersDirectory) RoomsOf(context.Context, uint64) ([]string, error) { return []string{"r1"}, nil }

type testServer struct {
	*Server
	url string
}

func startServer(t *testing.T, o Options) *testServer {
	t.Helper()
	return startServerWith(t, o, nil)
}

// startServerWith starts a server whose store is wrap(the SQLite store)
// and whose directory is o.Directory (default usersDirectory).
func startServerWith(t *testing.T, o Options, wrap func(*GormStore) Store) *testServer {
	t.Helper()
	store, err := OpenStore("sqlite", dbtest.Engines(t)[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	o.Store, o.Logger = store, testLogger()
	if wrap != nil {
		o.Store = wrap(store)
	}
	return serve(t, o, func() { store.Close() })
}

// serve starts a chat server with o, a test directory and generous rates
// where o leaves them unset, behind an httptest server; at the test's end
// it shuts the server down, then runs closers.
func serve(t *testing.T, o Options, closers ...func()) *testServer {
	t.Helper()
	if o.Directory == nil {
		o.Directory = usersDirectory{}
	}
	if o.SendPerSec == 0 {
		o.SendPerSec, o.SendBurst = 10000, 10000
	}
	if o.FramesPerSec == 0 {
		o.FramesPerSec, o.FramesBurst = 10000, 10000
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		for _, c := range closers {
			c()
		}
	})
	return &testServer{Server: srv, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// gate is a client connection whose reads can be paused: a client that
// stops reading, as a stalled or overloaded player does.
type gate struct {
	net.Conn
	mu     sync.Mutex
	paused bool
	cond   *sync.Cond
}

func (g *gate) Read(p []byte) (int, error) {
	g.mu.Lock()
	for g.paused {
		g.cond.Wait()
	}
	g.mu.Unlock()
	return g.Conn.Read(p)
}

func (g *gate) set(paused bool) {
	g.mu.Lock()
	g.paused = paused
	g.mu.Unlock()
	g.cond.Broadcast()
}

// gatedDialer dials with a small receive buffer so that a paused reader
// backs up into the server's queues, not into the kernel's.
func gatedDialer(out **gate) *websocket.Dialer {
	return &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Set before connecting: shrinking the buffer of an established
		// connection can stall its window for good.
		d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		g := &gate{Conn: c}
		g.cond = sync.NewCond(&g.mu)
		*out = g
		return g, nil
	}}
}

// rawClient reads frames as they come, in order.
type rawClient struct {
	ws     *websocket.Conn
	mu     sync.Mutex
	frames []chat.Frame
	err    error // why reading ended
	done   chan struct{}
}

func dialRaw(t *testing.T, url, token string, d *websocket.Dialer) *rawClient {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	ws, _, err := d.Dial(url, map[string][]string{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	r := &rawClient{ws: ws, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		unzip := chat.NewDecompressor()
		tap := newFrameTap(t)
		for {
			kind, b, err := ws.ReadMessage()
			if err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
			if kind == websocket.BinaryMessage {
				if b, err = unzip.Decompress(b); err != nil {
					t.Errorf("undecodable binary frame: %v", err)
					return
				}
			}
			tap.check(false, b)
			f, err := chat.DecodeServer(b)
			if err != nil {
				t.Errorf("undecodable frame: %v", err)
				return
			}
			r.mu.Lock()
			r.frames = append(r.frames, f)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ws.Close(); <-r.done })
	return r
}

func (r *rawClient) send(t *testing.T, f chat.Frame) {
	t.Helper()
	b, _ := chat.Encode(f)
	checkFrame(t, true, b)
	if err := r.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

func (r *rawClient) snapshot() []chat.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chat.Frame(nil), r.frames...)
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dialSDK(t *testing.T, url, token string, mod func(*chatclient.Options)) *chatclient.Client {
	t.Helper()
	o := chatclient.Options{URL: url, Token: token, Trace: newFrameTap(t).check}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := chatclient.Dial(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// collectTexts gathers the messages of conv an SDK client delivers.
// discardEvents keeps a client that only sends from blocking on its events.
func discardEvents(t *testing.T, cl *chatclient.Client) {
	collectTexts(t, cl, "")
}

func collectTexts(t *testing.T, cl *chatclient.Client, conv string) func() []chat.Message {
	var mu sync.Mutex
	var got []chat.Message
	stop, stopped := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-stopped })
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case e := <-cl.Events():
				if e.Type == chatclient.EventMessage && e.Conv == conv {
					mu.Lock()
					got = append(got, e.Msg)
					mu.Unlock()
				}
			}
		}
	}()
	return func() []chat.Message {
		mu.Lock()
		defer mu.Unlock()
		return append([]chat.Message(nil), got...)
	}
}

// checkInOrderOnce fails unless got holds seqs 1..n of conv exactly once, in order.
func checkInOrderOnce(t *testing.T, got []chat.Message, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d: lost, duplicated or out of order", i, m.Seq)
		}
	}
}

// publish sends n lobby messages at about perSec and waits for their acks.
func publish(t *testing.T, cl *chatclient.Client, conv string, n int, perSec float64, body string) {
	t.Helper()
	var ps []*chatclient.Pending
	tick := time.NewTicker(time.Duration(float64(time.Second) / perSec))
	defer tick.Stop()
	for i := range n {
		ps = append(ps, cl.Send(conv, fmt.Sprintf("%s %d", body, i)))
		<-tick.C
	}
	for _, p := range ps {
		if _, err := p.Result(); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

func countType(fs []chat.Frame, typ string, critical bool) int {
	n := 0
	for _, f := range fs {
		if f.Type == typ && (f.Msg == nil || f.Msg.Critical == critical) {
			n++
		}
	}
	return n
}

func TestStormMeterHysteresis(t *testing.T) {
	st := newStorms(Options{StormEnter: 40, StormExit: 20, StormWindow: time.Second, NotifyInterval: 100 * time.Millisecond},
		testLogger(), newMetrics(nil, nil, nil).stormChanges)
	now := time.Unix(1000, 0)
	at := func(perSec int, d time.Duration) {
		gap := time.Second / time.Duration(perSec)
		for end := now.Add(d); now.Before(end); now = now.Add(gap) {
			st.observe("lobby:x", 1, now)
			st.tick(now)
		}
	}
	at(30, 3*time.Second)
	if st.count() == 1 {
		t.Fatal("30/s is below the enter threshold of 40/s")
	}
	at(60, 2*time.Second)
	if st.count() != 1 {
		t.Fatal("60/s must enter storm mode")
	}
	at(30, 3*time.Second)
	if st.count() != 1 {
		t.Fatal("30/s is above the exit threshold of 20/s: hysteresis keeps the storm")
	}
	at(10, 3*time.Second)
	if st.count() == 1 {
		t.Fatal("10/s must leave storm mode")
	}
	if got := testutil.ToFloat64(st.changes.WithLabelValues("storm")); got != 1 {
		t.Fatalf("%v storm entries counted, want 1", got)
	}
	if got := testutil.ToFloat64(st.changes.WithLabelValues("direct")); got != 1 {
		t.Fatalf("%v storm exits counted, want 1", got)
	}
	now = now.Add(5 * time.Second)
	st.tick(now)
	if len(st.convs) != 0 {
		t.Fatal("a quiet lobby's meter must be forgotten")
	}
}

// In a storm a subscriber gets notifies, at most one per interval, instead
// of every message; critical messages are still pushed; the SDK pulls and
// ends up with every message once, in order; below the exit threshold
// messages are pushed again.
func TestStormModeSwitchesAndNothingIsLost(t *testing.T) {
	const interval = 100 * time.Millisecond
	srv := startServer(t, Options{StormEnter: 40, StormExit: 20, StormWindow: 500 * time.Millisecond, NotifyInterval: interval})
	const lobby = "lobby:main"
	watcher := dialRaw(t, srv.url, "u1", nil)
	watcher.send(t, chat.Frame{Type: chat.TypeJoin, Conv: lobby, Ref: "j"})
	reader := dialSDK(t, srv.url, "u2", nil)
	got := collectTexts(t, reader, lobby)
	pub := dialSDK(t, srv.url, "u3", nil)
	discardEvents(t, pub)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []*chatclient.Client{reader, pub} {
		if err := c.Join(ctx, lobby); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the watcher's join", func() bool { return countType(watcher.snapshot(), chat.TypeJoined, false) == 1 })

	// Calm: every message is pushed.
	publish(t, pub, lobby, 10, 10, "calm")
	waitFor(t, 5*time.Second, "calm messages pushed", func() bool { return countType(watcher.snapshot(), chat.TypeMsg, false) == 10 })
	if srv.Stats().Storms != 0 || countType(watcher.snapshot(), chat.TypeNotify, false) != 0 {
		t.Fatal("10 messages/s must not start a storm")
	}

	// Storm: 300 messages at 200/s.
	stormStart := len(watcher.snapshot())
	done := make(chan struct{})
	go func() { defer close(done); publish(t, pub, lobby, 300, 200, "storm") }()
	waitFor(t, 5*time.Second, "storm mode", func() bool { return srv.Stats().Storms == 1 })
	seq, err := srv.Announce(ctx, lobby, "server restarts in 5 minutes")
	if err != nil {
		t.Fatal(err)
	}
	<-done
	stormFrames := watcher.snapshot()[stormStart:]
	pushed := countType(stormFrames, chat.TypeMsg, false)
	notifies := countType(stormFrames, chat.TypeNotify, false)
	if pushed >= 150 {
		t.Fatalf("%d of 300 storm messages were pushed one by one", pushed)
	}
	if max := int(1500*time.Millisecond/interval) + 5; notifies == 0 || notifies > max {
		t.Fatalf("%d notifies in a 1.5 s storm with a %s interval, want 1..%d", notifies, interval, max)
	}
	var critical bool
	for _, f := range stormFrames {
		critical = critical || f.Type == chat.TypeMsg && f.Msg.Critical && f.Msg.Seq == seq
	}
	if !critical {
		t.Fatal("the critical announcement was not pushed during the storm")
	}

	// Calm again: the storm ends and messages are pushed again.
	waitFor(t, 5*time.Second, "the storm's end", func() bool { return srv.Stats().Storms == 0 })
	before := len(watcher.snapshot())
	publish(t, pub, lobby, 1, 10, "after")
	waitFor(t, 5*time.Second, "a pushed message after the storm", func() bool {
		return countType(watcher.snapshot()[before:], chat.TypeMsg, false) == 1
	})

	total := 10 + 300 + 1 + 1
	waitFor(t, 10*time.Second, "the SDK reader to catch up", func() bool { return len(got()) >= total })
	checkInOrderOnce(t, got(), total)
	st := reader.Stats()
	if st.Notifies == 0 || st.Pulls == 0 || st.Batches == 0 {
		t.Fatalf("the reader did not pull compressed batches: %+v", st)
	}
	if st.BatchBytes*2 > st.BatchRaw {
		t.Fatalf("batches compressed %d → %d bytes, want at least 2×", st.BatchRaw, st.BatchBytes)
	}
	if testutil.ToFloat64(srv.metrics.pulls.WithLabelValues("built")) == 0 {
		t.Fatal("no page was built")
	}
}

// A client that stops reading holds at most a lane's worth of frames on
// the server; its bulk lane is dropped for a notify, and once it reads
// again it pulls everything it missed.
func TestSlowConsumerIsBoundedAndCatchesUp(t *testing.T) {
	const bulkLane, prioLane = 32, 64
	srv := startServer(t, Options{BulkLane: bulkLane, PriorityLane: prioLane, StormEnter: 1e9})
	const lobby = "lobby:big"
	var g *gate
	slow := dialSDK(t, srv.url, "u1", func(o *chatclient.Options) { o.Dialer = gatedDialer(&g) })
	got := collectTexts(t, slow, lobby)
	pub := dialSDK(t, srv.url, "u2", nil)
	discardEvents(t, pub)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []*chatclient.Client{slow, pub} {
		if err := c.Join(ctx, lobby); err != nil {
			t.Fatal(err)
		}
	}
	g.set(true)
	t.Cleanup(func() { g.set(false) })
	// More than the kernel's socket buffers hold (up to 4 MB here).
	const n = 3000
	body := strings.Repeat("x", 4000)
	var peak int
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				peak = max(peak, srv.Stats().Queued)
			}
		}
	}()
	publish(t, pub, lobby, n, 5000, body)
	close(stop)
	<-sampled
	if peak > bulkLane+prioLane {
		t.Fatalf("%d frames queued for one connection, bound %d", peak, bulkLane+prioLane)
	}
	if testutil.ToFloat64(srv.metrics.bulkDropped) == 0 {
		t.Fatal("the paused client's bulk lane never overflowed: the test did not test")
	}
	g.set(false)
	waitFor(t, 60*time.Second, "the slow client to catch up", func() bool { return len(got()) >= n })
	checkInOrderOnce(t, got(), n)
}

// A critical message queued behind a full bulk lane reaches the client
// before the chat messages queued ahead of it.
func TestCriticalOvertakesFullBulkQueue(t *testing.T) {
	srv := startServer(t, Options{BulkLane: 4096, StormEnter: 1e9, WriteTimeout: time.Minute})
	const room = "room:r1"
	var g *gate
	slow := dialRaw(t, srv.url, "u1", gatedDialer(&g))
	pub := dialSDK(t, srv.url, "u2", nil)
	discardEvents(t, pub)
	waitFor(t, 5*time.Second, "hello", func() bool { return countType(slow.snapshot(), chat.TypeHello, false) == 1 })
	g.set(true)
	t.Cleanup(func() { g.set(false) })
	const n = 2000 // 8 MB: more than the kernel's socket buffers hold
	publish(t, pub, room, n, 5000, strings.Repeat("y", 4000))
	waitFor(t, 5*time.Second, "a full bulk queue", func() bool { return srv.Stats().Queued >= 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := srv.Announce(ctx, room, "the room closes in one minute")
	if err != nil {
		t.Fatal(err)
	}
	g.set(false)
	deadline := time.Now().Add(15 * time.Second)
	for countType(slow.snapshot(), chat.TypeMsg, false) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := countType(slow.snapshot(), chat.TypeMsg, false); got != n {
		fs := slow.snapshot()
		t.Fatalf("%d of %d messages arrived; last frame %+v; reader: %v; stats %+v", got, n, fs[len(fs)-1].Msg.Seq, slow.err, srv.Stats())
	}
	pos := map[uint64]int{}
	for i, f := range slow.snapshot() {
		if f.Type == chat.TypeMsg {
			pos[f.Msg.Seq] = i
		}
	}
	crit, ok := pos[seq]
	if !ok {
		t.Fatal("the critical message never arrived")
	}
	if crit > pos[seq-1] {
		t.Fatalf("critical message arrived at frame %d, after the last bulk message queued before it (frame %d)", crit, pos[seq-1])
	}
	if behind := pos[seq-1] - crit; behind < 50 {
		t.Fatalf("critical message overtook only %d frames", behind)
	}
}

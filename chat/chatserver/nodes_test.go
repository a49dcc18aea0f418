package chatserver

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/redistest"
)

// chatNode is one of several chat servers sharing a database and a Redis.
type chatNode struct {
	*testServer
	store *GormStore
	bus   *RedisBus
}

// sharedDSN is the database several nodes share: a fresh PostgreSQL
// database (the engine a multi-node deployment runs).
func sharedDSN(t *testing.T) string {
	t.Helper()
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("several chat nodes share PostgreSQL: set %s", dbtest.EnvPostgres)
	}
	return dsn
}

// startNode starts a chat server on dsn whose sequencer and bus are on
// the Redis rs, as roomnetd does with redis.url set.
func startNode(t *testing.T, name, dsn string, rs *redistest.Server, o Options) *chatNode {
	t.Helper()
	st, err := OpenStore("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redisClient(t, rs)
	bus := NewRedisBus(rdb, RedisBusOptions{Logger: testLogger()})
	o.Store, o.Logger = st, testLogger().With("node", name)
	o.Sequencer = NewRedisSequencer(rdb, st, "")
	o.Bus = bus
	o.Registry = prometheus.NewRegistry()
	ts := serve(t, o, func() { _ = bus.Close() }, func() { st.Close() })
	waitFor(t, 5*time.Second, name+"'s bus subscribed", func() bool { return bus.Healthy() == nil })
	return &chatNode{testServer: ts, store: st, bus: bus}
}

// received gathers the text messages an SDK client delivers, per
// conversation, in delivery order.
func received(t *testing.T, cl *chatclient.Client) func(conv string) []chat.Message {
	var mu sync.Mutex
	got := map[string][]chat.Message{}
	stop, stopped := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-stopped })
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case e := <-cl.Events():
				if e.Type == chatclient.EventMessage && e.Msg.Kind == chat.KindText {
					mu.Lock()
					got[e.Conv] = append(got[e.Conv], e.Msg)
					mu.Unlock()
				}
			}
		}
	}()
	return func(conv string) []chat.Message {
		mu.Lock()
		defer mu.Unlock()
		return append([]chat.Message(nil), got[conv]...)
	}
}

// TestTwoNodesOnePostgresOneRedis runs two chat nodes on one PostgreSQL
// and one real redis-server, with senders and readers on both, in a room
// and a lobby. Mid-traffic Redis is flushed, a third writer stores
// messages the nodes never hear of (a node killed between its write and
// its publish: the counters are now behind the store on both nodes), and
// Redis is restarted empty. Every send is acknowledged once, under the
// seq it is stored at; no seq is stored twice; the taken seqs are written
// again under fresh ones (counted); every reader on either node gets every
// text message exactly once and in seq order.
func TestTwoNodesOnePostgresOneRedis(t *testing.T) {
	dsn := sharedDSN(t)
	rs := redistest.Start(t)
	a := startNode(t, "a", dsn, rs, Options{})
	b := startNode(t, "b", dsn, rs, Options{})
	const room, lobby = "room:r1", "lobby:l"
	convs := []string{room, lobby}

	type client struct {
		name string
		cl   *chatclient.Client
		got  func(string) []chat.Message
	}
	var clients []client
	for i, n := range []*chatNode{a, b, a, b} {
		cl := dialSDK(t, n.url, fmt.Sprint("u", i+1), func(o *chatclient.Options) {
			// Enough attempts to outlast a Redis restart.
			o.MaxAttempts = 20
			o.SendBackoff = chatclient.Backoff{Initial: 100 * time.Millisecond, Factor: 2, Max: time.Second}
		})
		got := received(t, cl)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cl.Join(ctx, lobby); err != nil {
			t.Fatal(err)
		}
		cancel()
		clients = append(clients, client{fmt.Sprintf("u%d on %s", i+1, []string{"a", "b"}[i%2]), cl, got})
	}

	// Senders u1 (node a) and u2 (node b), 3 rounds of 60 per
	// conversation; between rounds, the faults.
	acked := map[string]uint64{} // client_msg_id → seq
	var ackMu sync.Mutex
	round := func(r int) {
		var wg sync.WaitGroup
		for _, c := range clients[:2] {
			for _, conv := range convs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var ps []*chatclient.Pending
					for i := range 60 {
						ps = append(ps, c.cl.Send(conv, fmt.Sprintf("%s r%d #%d", c.name, r, i)))
						time.Sleep(2 * time.Millisecond)
					}
					for _, p := range ps {
						select {
						case <-p.Done():
						case <-time.After(60 * time.Second):
							t.Errorf("%s: a send to %s never ended", c.name, conv)
							return
						}
						seq, err := p.Result()
						if err != nil {
							t.Errorf("%s: send to %s failed: %v", c.name, conv, err)
							continue
						}
						ackMu.Lock()
						acked[p.ClientMsgID] = seq
						ackMu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
	}
	round(1)

	// Fault 1: Redis loses every counter, and a third writer stores ten
	// messages above everything the nodes know of, never publishing them.
	rs.Flush()
	ctx := context.Background()
	var third []StoredMessage
	for {
		top, err := a.store.MaxSeq(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		third = third[:0]
		for i := range uint64(10) {
			third = append(third, msgAt(room, top+1+i, 77, fmt.Sprintf("third-%d-%d", top, i)))
		}
		if err := a.store.Append(ctx, third); err == nil {
			break
		}
	}
	round(2)

	// Fault 2: Redis restarts empty while the third round runs.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(30 * time.Millisecond)
		rs.Restart()
	}()
	round(3)
	<-done
	if t.Failed() {
		t.FailNow()
	}

	conflicts := testutil.ToFloat64(a.metrics.seqConflicts) + testutil.ToFloat64(b.metrics.seqConflicts)
	if conflicts < 1 {
		t.Fatalf("no seq conflict: the scenario must make a node allocate a stored seq")
	}
	t.Logf("%d sends acked; %v seqs found taken and written again; %v sends refused while Redis was down",
		len(acked), conflicts, testutil.ToFloat64(a.metrics.seqUnavailable)+testutil.ToFloat64(b.metrics.seqUnavailable))

	// The store: every acked send once, at its acked seq.
	stored := map[string][]uint64{} // conv → text seqs
	for _, conv := range convs {
		page, err := a.store.HistoryAfter(ctx, conv, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint64]bool{}
		for _, m := range page {
			if seen[m.Seq] {
				t.Fatalf("%s: seq %d stored twice", conv, m.Seq)
			}
			seen[m.Seq] = true
			if m.Kind != chat.KindText {
				continue
			}
			stored[conv] = append(stored[conv], m.Seq)
			if m.SenderID == 77 {
				continue
			}
			if seq, ok := acked[m.ClientMsgID]; !ok {
				t.Errorf("%s: %s stored at %d but never acked", conv, m.ClientMsgID, m.Seq)
			} else if seq != m.Seq {
				t.Errorf("%s: %s acked as %d but stored at %d", conv, m.ClientMsgID, seq, m.Seq)
			}
		}
	}
	if n := len(stored[room]) + len(stored[lobby]) - len(third); n != len(acked) || n != 2*2*3*60 {
		t.Fatalf("%d sends stored, %d acked, want %d", n, len(acked), 2*2*3*60)
	}

	// Every reader, on either node: every text message once, in order.
	for _, c := range clients {
		for _, conv := range convs {
			want := stored[conv]
			waitFor(t, 30*time.Second, c.name+" received all of "+conv, func() bool { return len(c.got(conv)) >= len(want) })
			got := c.got(conv)
			seqs := make([]uint64, len(got))
			for i, m := range got {
				seqs[i] = m.Seq
			}
			if !slices.Equal(seqs, want) {
				t.Fatalf("%s received %s as %v, want %v (every message once, in order)", c.name, conv, seqs, want)
			}
		}
	}
}

// TestKickOnOneNodeReachesTheOther applies membership events on node a
// (where the control plane handled the request) and measures how long the
// kicked user's session on node b keeps access.
func TestKickOnOneNodeReachesTheOther(t *testing.T) {
	dsn := sharedDSN(t)
	rs := redistest.Start(t)
	a := startNode(t, "a", dsn, rs, Options{})
	b := startNode(t, "b", dsn, rs, Options{})
	c := dialRaw(t, b.url, "u5", nil)
	c.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	const rounds = 50
	var delays []time.Duration
	for i := range rounds {
		from := len(c.snapshot())
		start := time.Now()
		a.Apply([]MembershipEvent{{Type: "member_kicked", RoomID: "r1", UserID: 5, Username: "u5"}})
		c.await(t, from, "removed after kick "+fmt.Sprint(i), func(f chat.Frame) bool {
			return f.Type == chat.TypeRemoved && f.Conv == "room:r1" && f.Reason == "kicked"
		})
		delays = append(delays, time.Since(start))
		// Access is gone on node b.
		ref := fmt.Sprint("after-kick-", i)
		c.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r1", ClientMsgID: ref, Body: "still here?"})
		if f := c.answer(t, ref); f.Type != chat.TypeError || f.Error.Code != chat.ErrForbidden {
			t.Fatalf("a send after the kick answered %+v", f)
		}
		a.Apply([]MembershipEvent{{Type: "member_joined", RoomID: "r1", UserID: 5, Username: "u5"}})
		ref = fmt.Sprint("after-join-", i)
		waitFor(t, 5*time.Second, "access back after the join", func() bool { return b.access(connOf(b.Server, 5), "room:r1") })
		c.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r1", ClientMsgID: ref, Body: "back"})
		if f := c.answer(t, ref); f.Type != chat.TypeSent {
			t.Fatalf("a send after the join answered %+v", f)
		}
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	p := func(q float64) time.Duration { return delays[int(q*float64(len(delays)-1))] }
	t.Logf("kick on node a → removed on node b over Redis, %d kicks: p50 %v, p99 %v, max %v", rounds, p(0.5), p(0.99), delays[len(delays)-1])
	if p(0.99) > time.Second {
		t.Fatalf("kick p99 across nodes %v: want under 1s", p(0.99))
	}
}

// connOf returns a connection of user on s.
func connOf(s *Server, user uint64) *conn { return s.hub.anyOf(user) }

// TestSendWhileRedisIsDownFailsFastAndItsRetryIsStoredOnce: with Redis
// gone a send is answered unavailable with retry_after_ms at once,
// nothing is stored; the same client_msg_id once Redis is back is stored
// and acknowledged once.
func TestSendWhileRedisIsDownFailsFastAndItsRetryIsStoredOnce(t *testing.T) {
	dsn := sharedDSN(t)
	rs := redistest.Start(t)
	a := startNode(t, "a", dsn, rs, Options{})
	c := dialRaw(t, a.url, "u1", nil)
	c.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	send := func(id string) chat.Frame {
		t.Helper()
		from := len(c.snapshot())
		c.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r1", ClientMsgID: id, Body: "hi " + id})
		f, _ := c.await(t, from, "the answer to "+id, func(f chat.Frame) bool {
			return f.Ref == id && (f.Type == chat.TypeSent || f.Type == chat.TypeError)
		})
		return f
	}
	if f := send("before"); f.Type != chat.TypeSent || f.Seq != 1 {
		t.Fatalf("first send answered %+v", f)
	}
	rs.Stop()
	start := time.Now()
	f := send("during")
	if f.Type != chat.TypeError || f.Error.Code != chat.ErrUnavailable || f.Error.RetryAfterMS != 1000 {
		t.Fatalf("a send with Redis down answered %+v; want unavailable with retry_after_ms 1000", f)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the refusal took %v: it must be fast", d)
	}
	if top, _ := a.store.MaxSeq(context.Background(), "room:r1"); top != 1 {
		t.Fatalf("max seq %d after a refused send: nothing may be stored", top)
	}
	rs.Restart()
	// The retry (same client_msg_id) is stored once.
	if f := send("during"); f.Type != chat.TypeSent || f.Seq != 2 {
		t.Fatalf("the retry answered %+v; want sent at seq 2", f)
	}
	if f := send("during"); f.Type != chat.TypeSent || f.Seq != 2 {
		t.Fatalf("a second retry answered %+v; want the same seq 2", f)
	}
	page, _ := a.store.HistoryAfter(context.Background(), "room:r1", 0, 10)
	if len(page) != 2 {
		t.Fatalf("stored %v", seqsOf(page))
	}
}

// TestBusBreakEndsWithANotifyPerConversation: while node b's
// subscription is down it misses what is stored meanwhile; when it is
// back every session on b gets a notify with the newest stored seq of each
// conversation it follows, and pulls.
func TestBusBreakEndsWithANotifyPerConversation(t *testing.T) {
	dsn := sharedDSN(t)
	rs := redistest.Start(t)
	b := startNode(t, "b", dsn, rs, Options{})
	c := dialRaw(t, b.url, "u2", nil)
	c.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	c.send(t, chat.Frame{Type: chat.TypeJoin, Conv: "lobby:x", Ref: "j"})
	c.answer(t, "j")
	rs.Stop()
	waitFor(t, 10*time.Second, "b's bus reports the break", func() bool { return b.bus.Healthy() != nil })
	// Stored meanwhile, by a writer b does not hear from.
	ctx := context.Background()
	if err := b.store.Append(ctx, []StoredMessage{msgAt("room:r1", 1, 9, "x1"), msgAt("room:r1", 2, 9, "x2"), msgAt("lobby:x", 1, 9, "y1")}); err != nil {
		t.Fatal(err)
	}
	from := len(c.snapshot())
	rs.Restart()
	waitFor(t, 10*time.Second, "b's bus back", func() bool { return b.bus.Healthy() == nil })
	for conv, top := range map[string]uint64{"room:r1": 2, "lobby:x": 1} {
		c.await(t, from, "a notify of "+conv, func(f chat.Frame) bool {
			return f.Type == chat.TypeNotify && f.Conv == conv && f.Seq == top
		})
	}
}

// roomsDirectory is usersDirectory whose rooms can change.
type roomsDirectory struct {
	usersDirectory
	mu    sync.Mutex
	rooms []string
}

func (d *roomsDirectory) RoomsOf(context.Context, uint64) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.rooms...), nil
}

func (d *roomsDirectory) set(rooms ...string) {
	d.mu.Lock()
	d.rooms = rooms
	d.mu.Unlock()
}

// TestMembershipMissedDuringABusBreakIsCaughtUp: the events that removed
// a member from room r1 and added it to r2 never reached node b (its
// subscription was down, or the node that handled them died before
// publishing); when b's bus is back, the session's rooms follow the
// directory.
func TestMembershipMissedDuringABusBreakIsCaughtUp(t *testing.T) {
	dsn := sharedDSN(t)
	rs := redistest.Start(t)
	dir := &roomsDirectory{rooms: []string{"r1"}}
	b := startNode(t, "b", dsn, rs, Options{Directory: dir})
	c := dialRaw(t, b.url, "u3", nil)
	c.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	waitFor(t, 5*time.Second, "the session's rooms loaded", func() bool {
		cn := connOf(b.Server, 3)
		return cn != nil && b.access(cn, "room:r1")
	})
	rs.Stop()
	waitFor(t, 10*time.Second, "b's bus reports the break", func() bool { return b.bus.Healthy() != nil })
	dir.set("r2")
	rs.Restart()
	c.await(t, 0, "removed from r1", func(f chat.Frame) bool {
		return f.Type == chat.TypeRemoved && f.Conv == "room:r1" && f.Reason == "left"
	})
	waitFor(t, 5*time.Second, "access to r2", func() bool { return b.access(connOf(b.Server, 3), "room:r2") })
	from := len(c.snapshot())
	c.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r1", ClientMsgID: "m1", Body: "x"})
	if f, _ := c.await(t, from, "the answer to m1", func(f chat.Frame) bool { return f.Ref == "m1" }); f.Type != chat.TypeError || f.Error.Code != chat.ErrForbidden {
		t.Fatalf("a send to the lost room answered %+v", f)
	}
	c.send(t, chat.Frame{Type: chat.TypeSend, Conv: "room:r2", ClientMsgID: "m2", Body: "y"})
	if f, _ := c.await(t, from, "the answer to m2", func(f chat.Frame) bool { return f.Ref == "m2" }); f.Type != chat.TypeSent {
		t.Fatalf("a send to the new room answered %+v", f)
	}
}

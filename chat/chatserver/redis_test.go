package chatserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomnet/roomnet/internal/redisconn"
	"github.com/roomnet/roomnet/internal/redistest"
)

func redisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	rdb, err := redisconn.Open(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// sqliteStore is one fresh store: the sequencer's fence does not depend
// on the engine (PostgreSQL runs the same primary key).
func sqliteStore(t *testing.T) *GormStore {
	t.Helper()
	for name, s := range openStores(t) {
		if name == "sqlite" {
			return s
		}
	}
	t.Fatal("no sqlite store")
	return nil
}

func TestRedisSequencerIsUniqueAcrossNodesAndSeededFromTheStore(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	st := sqliteStore(t)
	if err := st.Append(ctx, []StoredMessage{msgAt("lobby:x", 41, 1, "a")}); err != nil {
		t.Fatal(err)
	}
	nodes := []*RedisSequencer{
		NewRedisSequencer(redisClient(t, srv), st, ""),
		NewRedisSequencer(redisClient(t, srv), st, ""),
	}
	got := allocateConcurrently(t, "lobby:x", 4, 100, nodes[0], nodes[1])
	for n := uint64(42); n < 842; n++ {
		if !got[n] {
			t.Fatalf("seq %d missing: two nodes must share one counter continuing from the stored 41", n)
		}
	}
}

// TestRedisSequencerIsFencedByTheStore loses Redis's counters in both ways
// a deployment can (an empty restart, FLUSHALL) between writes of two
// nodes, and checks that no seq is ever stored twice: the node that saw
// the writes continues above them at once; the node that did not gets its
// stale allocation refused by the store and continues above everything
// stored after Refresh.
func TestRedisSequencerIsFencedByTheStore(t *testing.T) {
	for _, loss := range []string{"restart", "flushall"} {
		t.Run(loss, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t)
			st := sqliteStore(t)
			a := NewRedisSequencer(redisClient(t, srv), st, "")
			b := NewRedisSequencer(redisClient(t, srv), st, "")
			store := func(seq *RedisSequencer, n uint64, id string) error {
				err := st.Append(ctx, []StoredMessage{msgAt("room:r", n, 1, id)})
				if err == nil {
					seq.Observe("room:r", n)
				}
				return err
			}
			// B writes seq 1, then A writes 2..50 that B never hears of.
			n, err := b.Next(ctx, "room:r")
			if err != nil || n != 1 {
				t.Fatalf("first seq %d, %v", n, err)
			}
			if err := store(b, n, "b1"); err != nil {
				t.Fatal(err)
			}
			for i := range 49 {
				n, err := a.Next(ctx, "room:r")
				if err != nil {
					t.Fatal(err)
				}
				if err := store(a, n, fmt.Sprint("a", i)); err != nil {
					t.Fatal(err)
				}
			}
			if loss == "restart" {
				srv.Restart()
			} else {
				srv.Flush()
			}
			// B's floor is 1: Redis's lost counter gives it a seq that A
			// already stored. The store must refuse it.
			stale, err := b.Next(ctx, "room:r")
			if err != nil {
				t.Fatal(err)
			}
			if stale > 50 {
				t.Fatalf("B got %d: the scenario needs a stale allocation to prove the fence", stale)
			}
			if err := store(b, stale, "b-stale"); err == nil {
				t.Fatalf("the store accepted seq %d twice", stale)
			}
			// A saw its own writes: its floor lifts the lost counter.
			if n, err := a.Next(ctx, "room:r"); err != nil || n != 51 {
				t.Fatalf("A after the loss: seq %d, %v; want 51 (its floor is 50)", n, err)
			} else if err := store(a, n, "a-after"); err != nil {
				t.Fatal(err)
			}
			if err := b.Refresh(ctx, "room:r"); err != nil {
				t.Fatal(err)
			}
			n, err = b.Next(ctx, "room:r")
			if err != nil || n <= 51 {
				t.Fatalf("B after Refresh: seq %d, %v; want above the stored 51", n, err)
			}
			if err := store(b, n, "b-after"); err != nil {
				t.Fatalf("B's fresh seq %d refused: %v", n, err)
			}
			page, err := st.HistoryAfter(ctx, "room:r", 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]string{}
			for _, m := range page {
				if prev, dup := seen[m.Seq]; dup {
					t.Fatalf("seq %d stored for %s and %s", m.Seq, prev, m.ClientMsgID)
				}
				seen[m.Seq] = m.ClientMsgID
			}
			if len(page) != 52 {
				t.Fatalf("%d messages stored, want 52", len(page))
			}
		})
	}
}

func TestRedisSequencerFailsFastWhileRedisIsDownAndRecovers(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	st := sqliteStore(t)
	seq := NewRedisSequencer(redisClient(t, srv), st, "")
	for want := uint64(1); want <= 3; want++ {
		if n, err := seq.Next(ctx, "lobby:l"); err != nil || n != want {
			t.Fatalf("seq %d, %v; want %d", n, err, want)
		}
	}
	srv.Stop()
	start := time.Now()
	if _, err := seq.Next(ctx, "lobby:l"); err == nil {
		t.Fatal("allocated a seq with Redis down")
	}
	// The bound is the client's timeouts, not a test of speed: a stalled
	// allocation would hold a sender's request for go-redis's defaults
	// (seconds, with retries) instead of answering "unavailable".
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("allocation with Redis down took %v: it must fail fast", d)
	}
	srv.Restart()
	n, err := seq.Next(ctx, "lobby:l")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("after Redis came back empty: seq %d, want 4 (above the node's own allocations)", n)
	}
}

func TestRedisBusFansOutInOrderAndResubscribes(t *testing.T) {
	srv := redistest.Start(t)
	type node struct {
		bus    *RedisBus
		mu     sync.Mutex
		got    []string
		resubs int
	}
	nodes := make([]*node, 2)
	for i := range nodes {
		n := &node{}
		n.bus = NewRedisBus(redisClient(t, srv), RedisBusOptions{
			Prefix:        "test:bus:",
			OnResubscribe: func() { n.mu.Lock(); n.resubs++; n.mu.Unlock() },
		})
		n.bus.Subscribe(func(topic string, payload []byte) {
			n.mu.Lock()
			n.got = append(n.got, topic+"="+string(payload))
			n.mu.Unlock()
		})
		t.Cleanup(func() {
			if err := n.bus.Close(); err != nil {
				t.Errorf("closing bus: %v", err)
			}
		})
		nodes[i] = n
	}
	waitFor(t, 5*time.Second, "both buses subscribed", func() bool {
		return nodes[0].bus.Healthy() == nil && nodes[1].bus.Healthy() == nil
	})
	ctx := context.Background()
	publish := func(from int, first, last int) {
		for i := first; i <= last; i++ {
			if err := nodes[from].bus.Publish(ctx, "conv:lobby:x", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := func(upTo int) []string {
		var out []string
		for i := 1; i <= upTo; i++ {
			out = append(out, fmt.Sprintf("conv:lobby:x=%d", i))
		}
		return out
	}
	check := func(upTo int) {
		t.Helper()
		for i, n := range nodes {
			waitFor(t, 5*time.Second, fmt.Sprintf("node %d received %d payloads", i, upTo), func() bool {
				n.mu.Lock()
				defer n.mu.Unlock()
				return len(n.got) >= upTo
			})
			n.mu.Lock()
			got := append([]string(nil), n.got...)
			n.mu.Unlock()
			if fmt.Sprint(got) != fmt.Sprint(want(upTo)) {
				t.Fatalf("node %d received %v, want %v (every payload once, in publish order)", i, got, want(upTo))
			}
		}
	}
	publish(0, 1, 100)
	check(100)

	srv.Restart()
	waitFor(t, 10*time.Second, "both buses resubscribed", func() bool {
		for _, n := range nodes {
			n.mu.Lock()
			r := n.resubs
			n.mu.Unlock()
			if r < 1 || n.bus.Healthy() != nil {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if n.bus.Breaks() < 1 {
			t.Fatalf("the break was not counted")
		}
		n.mu.Lock()
		n.got = n.got[:0]
		n.mu.Unlock()
	}
	publish(1, 1, 50)
	check(50)
}

func TestRedisBusPublishFailsWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	bus := NewRedisBus(redisClient(t, srv), RedisBusOptions{})
	defer bus.Close()
	srv.Stop()
	err := bus.Publish(context.Background(), "ctl", []byte("x"))
	if err == nil {
		t.Fatal("published with Redis down")
	}
	waitFor(t, 10*time.Second, "bus reports itself unhealthy", func() bool { return bus.Healthy() != nil })
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish hung until a deadline instead of failing: %v", err)
	}
}

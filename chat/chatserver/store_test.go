package chatserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomnet/roomnet/internal/dbtest"
)

func openStores(t *testing.T) map[string]*GormStore {
	out := map[string]*GormStore{}
	for _, e := range dbtest.Engines(t) {
		s, err := OpenStore(e.Driver, e.DSN)
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		t.Cleanup(func() { s.Close() })
		out[e.Name] = s
	}
	return out
}

func msgAt(conv string, seq uint64, sender uint64, id string) StoredMessage {
	return StoredMessage{Conv: conv, Seq: seq, Kind: "text", SenderID: sender, SenderName: fmt.Sprint("u", sender), ClientMsgID: id, Body: "b" + id, CreatedAt: time.Now().UTC()}
}

func TestStoreOnEveryEngine(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			var batch []StoredMessage
			for i := uint64(1); i <= 25; i++ {
				batch = append(batch, msgAt("room:a", i, 1+i%2, fmt.Sprint("m", i)))
			}
			if err := s.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, []StoredMessage{msgAt("dm:1:2", 1, 1, "d1")}); err != nil {
				t.Fatal(err)
			}
			// A batch with one duplicate client id stores nothing.
			err := s.Append(ctx, []StoredMessage{msgAt("room:a", 26, 3, "new"), msgAt("room:a", 27, 2, "m1")})
			if !errors.Is(err, ErrDuplicate) {
				t.Fatalf("duplicate client id: %v", err)
			}
			if top, _ := s.MaxSeq(ctx, "room:a"); top != 25 {
				t.Fatalf("max seq %d after a refused batch", top)
			}
			// The same client id in another conversation is fine.
			if err := s.Append(ctx, []StoredMessage{msgAt("room:b", 1, 1, "m1")}); err != nil {
				t.Fatal(err)
			}
			m, ok, err := s.FindByClientID(ctx, "room:a", 2, "m5")
			if err != nil || !ok || m.Seq != 5 {
				t.Fatalf("find: %+v %v %v", m, ok, err)
			}
			if _, ok, _ := s.FindByClientID(ctx, "room:a", 1, "m5"); ok {
				t.Fatal("client ids are per sender")
			}
			tops, err := s.MaxSeqs(ctx, []string{"room:a", "room:b", "room:none"})
			if err != nil || tops["room:a"] != 25 || tops["room:b"] != 1 || tops["room:none"] != 0 {
				t.Fatalf("max seqs %v %v", tops, err)
			}
			newest, err := s.HistoryBefore(ctx, "room:a", 0, 5)
			if err != nil || len(newest) != 5 || newest[0].Seq != 21 || newest[4].Seq != 25 {
				t.Fatalf("newest page: %v %v", seqsOf(newest), err)
			}
			older, _ := s.HistoryBefore(ctx, "room:a", 21, 5)
			if len(older) != 5 || older[0].Seq != 16 || older[4].Seq != 20 {
				t.Fatalf("before page: %v", seqsOf(older))
			}
			after, _ := s.HistoryAfter(ctx, "room:a", 22, 10)
			if len(after) != 3 || after[0].Seq != 23 {
				t.Fatalf("after page: %v", seqsOf(after))
			}
			first, _ := s.HistoryAfter(ctx, "room:a", 0, 3)
			if len(first) != 3 || first[0].Seq != 1 || first[2].Seq != 3 {
				t.Fatalf("after 0 must start at the first message: %v", seqsOf(first))
			}
			if huge, err := s.HistoryAfter(ctx, "room:a", 1<<63, 3); err != nil || len(huge) != 0 {
				t.Fatalf("after 2^63: %v %v", seqsOf(huge), err)
			}
			// Cursors only go up.
			if err := s.SaveCursors(ctx, []Cursor{{UserID: 7, Conv: "room:a", Delivered: 10, Read: 4}}); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveCursors(ctx, []Cursor{{UserID: 7, Conv: "room:a", Delivered: 8, Read: 6}}); err != nil {
				t.Fatal(err)
			}
			cs, err := s.Cursors(ctx, 7)
			if err != nil || len(cs) != 1 || cs[0].Delivered != 10 || cs[0].Read != 6 {
				t.Fatalf("cursors %+v %v", cs, err)
			}
			dms, err := s.DirectConvs(ctx, 2)
			if err != nil || len(dms) != 1 || dms[0] != "dm:1:2" {
				t.Fatalf("direct convs %v %v", dms, err)
			}
			if dms, _ := s.DirectConvs(ctx, 12); len(dms) != 0 {
				t.Fatalf("user 12 is in no direct conversation: %v", dms)
			}
		})
	}
}

func seqsOf(ms []StoredMessage) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func TestMemorySequencerSeedsFromStoreAndIsUnique(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			if err := s.Append(ctx, []StoredMessage{msgAt("lobby:x", 41, 1, "a")}); err != nil {
				t.Fatal(err)
			}
			seq := NewMemorySequencer(s)
			got := allocateConcurrently(t, "lobby:x", 8, 100, seq)
			for n := uint64(42); n < 842; n++ {
				if !got[n] {
					t.Fatalf("seq %d missing: allocation must continue from the stored 41 without holes", n)
				}
			}
			if n, _ := seq.Next(ctx, "lobby:other"); n != 1 {
				t.Fatalf("a new conversation starts at 1, got %d", n)
			}
		})
	}
}

// failingStore fails appends on demand, standing in for a failing disk.
type failingStore struct {
	Store
	mu      sync.Mutex
	failAll bool
	failIDs map[string]bool
	appends int
}

func (f *failingStore) Append(ctx context.Context, msgs []StoredMessage) error {
	f.mu.Lock()
	f.appends++
	fail := f.failAll
	for _, m := range msgs {
		if f.failIDs[m.ClientMsgID] {
			fail = true
		}
	}
	f.mu.Unlock()
	if fail {
		return errors.New("disk on fire")
	}
	return f.Store.Append(ctx, msgs)
}

func TestGroupCommitBatchesAndTombstonesFailures(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			fs := &failingStore{Store: s, failIDs: map[string]bool{"bad": true}}
			c := newCommitter(fs, NewMemorySequencer(fs), prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}), testLogger(), 64)
			results := make(chan error, 200)
			var wg sync.WaitGroup
			for i := range 200 {
				id := fmt.Sprint("ok", i)
				if i == 77 {
					id = "bad"
				}
				wg.Add(1)
				c.submit(&pending{msg: msgAt("room:gc", uint64(i+1), 1, id), done: func(_ StoredMessage, err error) {
					results <- err
					wg.Done()
				}})
			}
			wg.Wait()
			c.close()
			close(results)
			var failed int
			for err := range results {
				if err != nil {
					failed++
				}
			}
			if failed != 1 {
				t.Fatalf("%d sends failed, want only the bad one", failed)
			}
			batches, msgs := c.stats()
			if msgs != 200 || batches >= 200 {
				t.Fatalf("%d messages in %d batches: concurrent sends must share writes", msgs, batches)
			}
			// The failed seq is a tombstone: a gap fill sees it, never waits.
			page, err := s.HistoryAfter(ctx, "room:gc", 77, 1)
			if err != nil || len(page) != 1 || page[0].Seq != 78 || page[0].Kind != "tombstone" {
				t.Fatalf("seq 78: %+v %v", page, err)
			}
			all, _ := s.HistoryBefore(ctx, "room:gc", 0, 500)
			if len(all) != 200 {
				t.Fatalf("%d rows, want 199 messages and 1 tombstone", len(all))
			}
			t.Logf("%s: 200 messages in %d batches", name, batches)
		})
	}
}

// allocateConcurrently has perSeq goroutines on each sequencer allocate n
// seqs of conv at once; it fails the test on an error or a seq allocated
// twice and returns the set allocated.
func allocateConcurrently(t *testing.T, conv string, perSeq, n int, seqs ...Sequencer) map[uint64]bool {
	t.Helper()
	var mu sync.Mutex
	got := map[uint64]bool{}
	var wg sync.WaitGroup
	for _, seq := range seqs {
		for range perSeq {
			wg.Go(func() {
				for range n {
					s, err := seq.Next(context.Background(), conv)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if got[s] {
						t.Errorf("seq %d allocated twice", s)
					}
					got[s] = true
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return got
}

package chatserver

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStoreTellsATakenSeqFromARepeatedSend: the two unique keys of a
// message fail with different errors, on every engine, for one message
// and for a batch.
func TestStoreTellsATakenSeqFromARepeatedSend(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			if err := s.Append(ctx, []StoredMessage{msgAt("room:f", 1, 1, "a"), msgAt("room:f", 2, 2, "b")}); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name string
				msgs []StoredMessage
				want error
			}{
				{"seq taken", []StoredMessage{msgAt("room:f", 2, 3, "c")}, ErrSeqTaken},
				{"seq taken in a batch", []StoredMessage{msgAt("room:f", 3, 3, "c"), msgAt("room:f", 1, 3, "d")}, ErrSeqTaken},
				{"repeated send", []StoredMessage{msgAt("room:f", 9, 2, "b")}, ErrDuplicate},
				{"repeated send on a taken seq", []StoredMessage{msgAt("room:f", 1, 2, "b")}, ErrDuplicate},
			} {
				if err := s.Append(ctx, tc.msgs); !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
				}
			}
			if top, _ := s.MaxSeq(ctx, "room:f"); top != 2 {
				t.Fatalf("max seq %d: a refused batch stored something", top)
			}
		})
	}
}

// failingSeq is a sequencer that cannot allocate (Redis down).
type failingSeq struct{}

func (failingSeq) Next(context.Context, string) (uint64, error) {
	return 0, fmt.Errorf("%w: redis down", ErrSeqUnavailable)
}

// TestCommitterWritesATakenSeqAgainUnderAFreshOne plays the node whose
// shared sequencer handed out seqs another node had stored: its messages
// are stored above everything stored, acknowledged with the fresh seq,
// and the other node's messages are left alone (no tombstone over them).
func TestCommitterWritesATakenSeqAgainUnderAFreshOne(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			var others []StoredMessage
			for i := uint64(1); i <= 10; i++ {
				others = append(others, msgAt("room:c", i, 9, fmt.Sprint("other", i)))
			}
			if err := s.Append(ctx, others); err != nil {
				t.Fatal(err)
			}
			seq := NewMemorySequencer(s)
			conflicts := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
			c := newCommitter(s, seq, conflicts, testLogger(), 64)
			// This node's stale view: seqs 4..8 (taken) and 11 (free).
			type result struct {
				m   StoredMessage
				err error
			}
			results := make(chan result, 6)
			for i, n := range []uint64{4, 5, 6, 7, 8, 11} {
				c.submit(&pending{msg: msgAt("room:c", n, 1, fmt.Sprint("mine", i)), done: func(m StoredMessage, err error) {
					results <- result{m, err}
				}})
			}
			acked := map[uint64]string{}
			for range 6 {
				r := <-results
				if r.err != nil {
					t.Fatalf("a send failed: %v", r.err)
				}
				if prev, dup := acked[r.m.Seq]; dup {
					t.Fatalf("seq %d acked for %s and %s", r.m.Seq, prev, r.m.ClientMsgID)
				}
				acked[r.m.Seq] = r.m.ClientMsgID
			}
			c.close()
			page, err := s.HistoryAfter(ctx, "room:c", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) != 16 {
				t.Fatalf("%d rows stored, want 16 (10 of the other writer, 6 of this one): %v", len(page), seqsOf(page))
			}
			for _, m := range page {
				if m.Kind == "tombstone" {
					t.Fatalf("seq %d tombstoned: nothing failed", m.Seq)
				}
				if m.Seq <= 10 && m.SenderID != 9 {
					t.Fatalf("seq %d holds %s: the other writer's message was replaced", m.Seq, m.ClientMsgID)
				}
				if m.SenderID == 1 && acked[m.Seq] != m.ClientMsgID {
					t.Fatalf("seq %d stored %s but acked %q", m.Seq, m.ClientMsgID, acked[m.Seq])
				}
			}
			if got := testutil.ToFloat64(conflicts); got < 5 {
				t.Fatalf("%v conflicts counted, want at least 5", got)
			}
		})
	}
}

// TestCommitterRefusesATakenSeqWhenNoFreshOneCanBeHad: with the
// sequencer down, the send fails (a retryable unavailable for the client)
// and nothing is written, not even a tombstone.
func TestCommitterRefusesATakenSeqWhenNoFreshOneCanBeHad(t *testing.T) {
	ctx := context.Background()
	s := sqliteStore(t)
	if err := s.Append(ctx, []StoredMessage{msgAt("room:d", 1, 9, "other")}); err != nil {
		t.Fatal(err)
	}
	c := newCommitter(s, failingSeq{}, prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}), testLogger(), 8)
	done := make(chan error, 1)
	c.submit(&pending{msg: msgAt("room:d", 1, 1, "mine"), done: func(_ StoredMessage, err error) { done <- err }})
	if err := <-done; !errors.Is(err, ErrSeqUnavailable) {
		t.Fatalf("send answered %v, want the sequencer's unavailability", err)
	}
	c.close()
	page, _ := s.HistoryAfter(ctx, "room:d", 0, 10)
	if len(page) != 1 || page[0].ClientMsgID != "other" {
		t.Fatalf("stored %v", page)
	}
}

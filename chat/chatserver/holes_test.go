package chatserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// appendCounter counts the store's writes and can store a slow writer's
// message just before the first batch of tombstones lands.
type appendCounter struct {
	*GormStore
	mu       sync.Mutex
	appends  int
	slowSeq  uint64 // when set: stored as a text message before the first multi-row append
	slowDone bool
}

func (a *appendCounter) Append(ctx context.Context, msgs []StoredMessage) error {
	a.mu.Lock()
	a.appends++
	slow := a.slowSeq != 0 && !a.slowDone && len(msgs) > 1
	if slow {
		a.slowDone = true
	}
	a.mu.Unlock()
	if slow {
		m := msgAt(msgs[0].Conv, a.slowSeq, 7, "slow-writer")
		if err := a.GormStore.Append(ctx, []StoredMessage{m}); err != nil {
			return err
		}
	}
	return a.GormStore.Append(ctx, msgs)
}

func (a *appendCounter) AppendSkippingTaken(ctx context.Context, msgs []StoredMessage) error {
	a.mu.Lock()
	a.appends++
	slow := a.slowSeq != 0 && !a.slowDone
	a.slowDone = a.slowDone || slow
	a.mu.Unlock()
	if slow {
		if err := a.GormStore.Append(ctx, []StoredMessage{msgAt(msgs[0].Conv, a.slowSeq, 7, "slow-writer")}); err != nil {
			return err
		}
	}
	return a.GormStore.AppendSkippingTaken(ctx, msgs)
}

func (a *appendCounter) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.appends
}

// A hole thousands of seqs wide (a failed PostgreSQL during a burst of
// sends leaves one: each retry allocated a seq that was never written)
// is tombstoned in a few writes, not one per seq; a seq a slow writer
// stores meanwhile keeps its message and costs no extra write.
func TestAWideHoleIsTombstonedInFewTransactions(t *testing.T) {
	ctx := context.Background()
	for name, store := range openStores(t) {
		for _, slow := range []uint64{0, 500} {
			t.Run(fmt.Sprintf("%s/slow-writer-at-%d", name, slow), func(t *testing.T) {
				conv := fmt.Sprintf("room:holes%d", slow)
				const last = 3002 // seqs 2..3001 are the hole
				old := time.Now().Add(-time.Minute).UTC()
				for _, seq := range []uint64{1, last} {
					m := msgAt(conv, seq, 1, fmt.Sprint("m", seq))
					m.CreatedAt = old
					if err := store.Append(ctx, []StoredMessage{m}); err != nil {
						t.Fatal(err)
					}
				}
				counted := &appendCounter{GormStore: store, slowSeq: slow}
				log := slog.New(slog.DiscardHandler)
				c := newCommitter(counted, NewMemorySequencer(store), prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}), log, 256)
				defer c.close()
				pg := newPages(store, c.tombstoneAll, log, newMetrics(nil, func() int { return 0 }, func() int { return 0 }))

				after, pulls := uint64(1), 0
				for after < last {
					p, err := pg.build(ctx, pageKey{conv: conv, after: after, limit: 200}, 0)
					if err != nil {
						t.Fatal(err)
					}
					if p.top <= after {
						t.Fatalf("pull %d after %d answered nothing new (top %d): the hole is not filled", pulls, after, p.top)
					}
					after = p.top
					pulls++
				}
				// 3,000 holes at 1,024 a pull: 3 writes, the slow writer's
				// seq skipped within its write.
				want := 3
				if got := counted.count(); got != want {
					t.Fatalf("%d transactions for a 3,000-seq hole over %d pulls, want %d", got, pulls, want)
				}
				msgs, err := store.HistoryAfter(ctx, conv, 0, 5000)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != last {
					t.Fatalf("%d rows stored, want seqs 1..%d each once", len(msgs), last)
				}
				for i, m := range msgs {
					wantKind := "tombstone"
					if m.Seq == 1 || m.Seq == last || m.Seq == slow {
						wantKind = "text"
					}
					if m.Seq != uint64(i+1) || m.Kind != wantKind {
						t.Fatalf("row %d is seq %d kind %s, want seq %d kind %s", i, m.Seq, m.Kind, i+1, wantKind)
					}
				}
			})
		}
	}
}

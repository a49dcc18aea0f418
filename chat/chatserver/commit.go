package chatserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// committer writes messages in small batches (group commit): the first
// waiting message starts a write and every message that arrived meanwhile
// joins the next one. Each caller's callback runs once its message is
// durable, or failed (then a tombstone takes its seq). A message whose seq
// another writer already stored is written again under a fresh seq.
type committer struct {
	store     commitStore
	seq       Sequencer
	conflicts prometheus.Counter
	log       *slog.Logger
	in        chan *pending
	max       int
	wg        sync.WaitGroup

	batches, messages int64 // for tests and metrics; written by run only
	mu                sync.Mutex
}

// commitStore is what the committer writes to and reads back.
type commitStore interface {
	// Append: see MessageStore.
	Append(ctx context.Context, msgs []StoredMessage) error
}

// takenSkipper is a store that writes rows skipping those whose keys are
// taken, in one statement (GormStore): tombstones then need no fallback
// to one write per seq when another writer got there first.
type takenSkipper interface {
	AppendSkippingTaken(ctx context.Context, msgs []StoredMessage) error
}

type pending struct {
	msg  StoredMessage
	done func(StoredMessage, error)
}

func newCommitter(store commitStore, seq Sequencer, conflicts prometheus.Counter, log *slog.Logger, maxBatch int) *committer {
	c := &committer{store: store, seq: seq, conflicts: conflicts, log: log, in: make(chan *pending, 4*maxBatch), max: maxBatch}
	c.wg.Add(1)
	go c.run()
	return c
}

// submit queues a message; done is called from the committer goroutine
// and must not block.
func (c *committer) submit(p *pending) { c.in <- p }

// close stops after writing everything queued.
func (c *committer) close() {
	close(c.in)
	c.wg.Wait()
}

func (c *committer) stats() (batches, messages int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches, c.messages
}

func (c *committer) run() {
	defer c.wg.Done()
	batch := make([]*pending, 0, c.max)
	for p := range c.in {
		batch = append(batch[:0], p)
	drain:
		for len(batch) < c.max {
			select {
			case q, ok := <-c.in:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		c.write(batch)
	}
}

func (c *committer) write(batch []*pending) {
	msgs := make([]StoredMessage, len(batch))
	for i, p := range batch {
		msgs[i] = p.msg
	}
	err := c.writeRetrying(msgs)
	c.mu.Lock()
	c.batches++
	c.messages += int64(len(batch))
	c.mu.Unlock()
	if err == nil {
		for i, p := range batch {
			p.done(msgs[i], nil)
		}
		return
	}
	// Isolate the culprit: one by one.
	for _, p := range batch {
		one := []StoredMessage{p.msg}
		err := c.writeRetrying(one)
		switch {
		case errors.Is(err, ErrSeqTaken):
			one[0], err = c.reallocate(p.msg)
		case err != nil:
			c.tombstone(p.msg, err)
		}
		p.done(one[0], err)
	}
}

// seqAttempts bounds the fresh seqs tried for one message whose seq was
// taken: each attempt starts above everything stored, so a second
// conflict needs another writer storing in between.
const seqAttempts = 5

// reallocate writes m under a fresh seq after another writer was found
// holding its seq (the shared sequencer lost counters this node had not
// seen written). The taken seq is not tombstoned: it is the other
// writer's message. The sequencer is first raised to the store's max seq,
// so the fresh seq is above every stored one. When no seq can be had
// (Redis down) nothing was allocated and the error is returned; when the
// write of the fresh seq fails, the fresh seq is tombstoned as usual.
func (c *committer) reallocate(m StoredMessage) (StoredMessage, error) {
	taken := m.Seq
	for range seqAttempts {
		c.conflicts.Inc()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		if r, ok := c.seq.(seqRefresher); ok {
			err = r.Refresh(ctx, m.Conv)
		}
		if err == nil {
			m.Seq, err = c.seq.Next(ctx, m.Conv)
		}
		cancel()
		if err != nil {
			c.log.Warn("seq taken by another writer and no fresh one to be had; the send is refused for a retry", "conv", m.Conv, "taken", taken, "err", err)
			return StoredMessage{}, err
		}
		one := []StoredMessage{m}
		err = c.writeRetrying(one)
		switch {
		case err == nil:
			c.log.Info("seq taken by another writer; stored under a fresh one", "conv", m.Conv, "taken", taken, "seq", m.Seq)
			return one[0], nil
		case errors.Is(err, ErrSeqTaken):
			continue
		default:
			c.tombstone(m, err)
			return one[0], err
		}
	}
	return StoredMessage{}, fmt.Errorf("writing %s: %w %d times in a row", m.Conv, ErrSeqTaken, seqAttempts)
}

func (c *committer) writeRetrying(msgs []StoredMessage) error {
	var err error
	for attempt := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.store.Append(ctx, msgs)
		cancel()
		if err == nil || errors.Is(err, ErrDuplicate) || errors.Is(err, ErrSeqTaken) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return err
}

// tombstone records that a seq will never hold a message, so that gap
// fills do not wait for it.
func (c *committer) tombstone(m StoredMessage, cause error) {
	// A taken seq (this tombstone already written, or another writer's
	// message there) needs no tombstone.
	if err := c.writeRetrying([]StoredMessage{tombstoneAt(m)}); err != nil && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrSeqTaken) {
		c.log.Error("writing tombstone; the seq stays a hole until the store recovers", "conv", m.Conv, "seq", m.Seq, "err", err, "cause", cause)
	}
}

// tombstoneAll tombstones the seqs of ms, leaving out every seq taken
// meanwhile (a slow writer's message, another node's tombstone): in one
// statement per appendRows on a takenSkipper; otherwise in one
// transaction, and one by one when that is refused for a taken seq. When
// the store fails the holes stay for the next pull to try.
func (c *committer) tombstoneAll(ms []StoredMessage, cause error) {
	if len(ms) == 0 {
		return
	}
	ts := make([]StoredMessage, len(ms))
	for i, m := range ms {
		ts[i] = tombstoneAt(m)
	}
	if sk, ok := c.store.(takenSkipper); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sk.AppendSkippingTaken(ctx, ts); err != nil {
			c.log.Error("writing tombstones; the seqs stay holes until a pull finds the store back", "conv", ms[0].Conv,
				"first", ms[0].Seq, "last", ms[len(ms)-1].Seq, "err", err, "cause", cause)
		}
		return
	}
	err := c.writeRetrying(ts)
	switch {
	case err == nil:
	case errors.Is(err, ErrDuplicate) || errors.Is(err, ErrSeqTaken):
		for _, m := range ms {
			c.tombstone(m, cause)
		}
	default:
		c.log.Error("writing tombstones; the seqs stay holes until a pull finds the store back", "conv", ms[0].Conv,
			"first", ms[0].Seq, "last", ms[len(ms)-1].Seq, "err", err, "cause", cause)
	}
}

func tombstoneAt(m StoredMessage) StoredMessage {
	return StoredMessage{Conv: m.Conv, Seq: m.Seq, Kind: "tombstone", ClientMsgID: fmt.Sprintf("tomb-%d", m.Seq), CreatedAt: m.CreatedAt}
}

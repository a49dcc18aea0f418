package chatserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// committer writes messages in small batches (group commit): the first
// waiting message starts a write and every message that arrived meanwhile
// joins the next one. Each caller's callback runs once its message is
// durable, or failed (then a tombstone takes its seq).
type committer struct {
	store Store
	log   *slog.Logger
	in    chan *pending
	max   int
	wg    sync.WaitGroup

	batches, messages int64 // for tests and metrics; written by run only
	mu                sync.Mutex
}

type pending struct {
	msg  StoredMessage
	done func(StoredMessage, error)
}

func newCommitter(store Store, log *slog.Logger, maxBatch int) *committer {
	c := &committer{store: store, log: log, in: make(chan *pending, 4*maxBatch), max: maxBatch}
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
		if err != nil {
			c.tombstone(p.msg, err)
		}
		p.done(one[0], err)
	}
}

func (c *committer) writeRetrying(msgs []StoredMessage) error {
	var err error
	for attempt := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.store.Append(ctx, msgs)
		cancel()
		if err == nil || errors.Is(err, ErrDuplicate) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return err
}

// tombstone records that a seq will never hold a message, so that gap
// fills do not wait for it.
func (c *committer) tombstone(m StoredMessage, cause error) {
	t := StoredMessage{Conv: m.Conv, Seq: m.Seq, Kind: "tombstone", ClientMsgID: fmt.Sprintf("tomb-%d", m.Seq), CreatedAt: m.CreatedAt}
	if err := c.writeRetrying([]StoredMessage{t}); err != nil {
		c.log.Error("writing tombstone; the seq stays a hole until the store recovers", "conv", m.Conv, "seq", m.Seq, "err", err, "cause", cause)
	}
}

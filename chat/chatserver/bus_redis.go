package chatserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisBus fans payloads out to every chat node through Redis pub/sub:
// one PUBLISH per payload, one delivery per node, each node (this one
// included) handing it to its local subscribers. Like every Bus it is
// at-most-once: while the subscription is broken payloads are lost, and
// OnResubscribe tells the node to let its clients catch up from the store
// (they pull by seq). Order is kept per publishing connection, not across
// nodes; clients order by seq.
type RedisBus struct {
	rdb     redis.UniversalClient
	prefix  string
	log     *slog.Logger
	onResub func()

	mu      sync.RWMutex
	handler func(string, []byte)

	ps      *redis.PubSub
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	healthy atomic.Bool
	lost    atomic.Int64
}

var _ Bus = (*RedisBus)(nil)

// RedisBusOptions configures a RedisBus.
type RedisBusOptions struct {
	// Prefix starts every channel's name (default "roomnet:bus:"); nodes
	// of one deployment share it.
	Prefix string
	// OnResubscribe runs (on the receive goroutine) each time the
	// subscription is back after a break, not at the first subscription.
	OnResubscribe func()
	Logger        *slog.Logger
}

// busPing is how often an idle subscription is checked: a Redis that went
// away without closing the connection is noticed within about this long.
const busPing = 2 * time.Second

// NewRedisBus subscribes to the deployment's channels and starts
// receiving. It returns at once; Healthy reports whether the subscription
// is up.
func NewRedisBus(rdb redis.UniversalClient, o RedisBusOptions) *RedisBus {
	if o.Prefix == "" {
		o.Prefix = "roomnet:bus:"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &RedisBus{rdb: rdb, prefix: o.Prefix, log: o.Logger, onResub: o.OnResubscribe, cancel: cancel}
	// With Redis down the pattern is still recorded: the receive loop's
	// reconnects subscribe it.
	b.ps = rdb.PSubscribe(ctx, o.Prefix+"*")
	b.wg.Add(1)
	go b.receive(ctx)
	return b
}

// Publish implements Bus.
func (b *RedisBus) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := b.rdb.Publish(ctx, b.prefix+topic, payload).Err(); err != nil {
		return fmt.Errorf("publishing on redis: %w", err)
	}
	return nil
}

var _ batchBus = (*RedisBus)(nil)

// publishBatch implements batchBus: one pipeline, one round trip.
func (b *RedisBus) publishBatch(ctx context.Context, batch []busPayload) {
	cmds := make([]*redis.IntCmd, len(batch))
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range batch {
			cmds[i] = p.Publish(ctx, b.prefix+m.topic, m.payload)
		}
		return nil
	})
	// A reply error is set on its command. Any other error (the
	// connection, after go-redis's retry) is not always set on the
	// commands: then none counts as published, and a payload that did
	// get through reaches this node's clients twice (they drop
	// duplicates by seq).
	var reply redis.Error
	connErr := err != nil && !errors.As(err, &reply)
	for i, c := range cmds {
		switch {
		case c == nil || connErr:
			batch[i].err = fmt.Errorf("publishing on redis: %w", err)
		case c.Err() != nil:
			batch[i].err = fmt.Errorf("publishing on redis: %w", c.Err())
		}
	}
}

// Subscribe implements Bus.
func (b *RedisBus) Subscribe(h func(string, []byte)) {
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
}

// OnResubscribe sets the function run (on the receive goroutine) each
// time the subscription is back after a break, replacing
// RedisBusOptions.OnResubscribe; a chat Server sets it to catch its
// clients up.
func (b *RedisBus) OnResubscribe(f func()) {
	b.mu.Lock()
	b.onResub = f
	b.mu.Unlock()
}

// Healthy reports nil while the subscription is up, and why not otherwise.
func (b *RedisBus) Healthy() error {
	if !b.healthy.Load() {
		return errors.New("chat bus: redis subscription down")
	}
	return nil
}

// Breaks counts how many times the subscription was lost.
func (b *RedisBus) Breaks() int64 { return b.lost.Load() }

// Close implements Bus: it stops receiving and waits for the receive
// goroutine. The Redis client stays open (its owner closes it).
func (b *RedisBus) Close() error {
	b.cancel()
	err := b.ps.Close()
	b.wg.Wait()
	return err
}

func (b *RedisBus) receive(ctx context.Context) {
	defer b.wg.Done()
	subscribedOnce := false
	backoff := 50 * time.Millisecond
	for {
		msg, err := b.ps.ReceiveTimeout(ctx, busPing)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Idle: ask for a pong; a dead server fails the ping
				// and the next receive reconnects.
				if perr := b.ps.Ping(ctx); perr == nil {
					continue
				}
			}
			if b.healthy.Swap(false) {
				b.lost.Add(1)
				b.log.Warn("chat bus: redis subscription lost; messages to other nodes wait for clients' pulls", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			backoff = 50 * time.Millisecond
			if !b.healthy.Swap(true) {
				if subscribedOnce {
					b.log.Info("chat bus: redis subscription back")
					b.mu.RLock()
					f := b.onResub
					b.mu.RUnlock()
					if f != nil {
						f()
					}
				}
				subscribedOnce = true
			}
		case *redis.Message:
			b.mu.RLock()
			h := b.handler
			b.mu.RUnlock()
			if h != nil {
				h(strings.TrimPrefix(m.Channel, b.prefix), []byte(m.Payload))
			}
		}
	}
}

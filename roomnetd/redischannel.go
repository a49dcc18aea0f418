package roomnetd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// channel is one Redis pub/sub channel between the nodes of a deployment:
// a subscription whose payloads go to a handler on a goroutine of its
// own, and bounded publishes. The control plane's events
// (events_redis.go), lost-shard notes (shardnotes_redis.go) and relay
// heartbeats (relaynotes_redis.go) each travel on one. At most once, like
// every pub/sub: each user says why that is enough.
type channel struct {
	rdb  redis.UniversalClient
	name string
	// node names this node in payloads, for handlers that skip their
	// own node's.
	node   string
	ctx    context.Context
	cancel context.CancelFunc
	ps     *redis.PubSub
	wg     sync.WaitGroup
}

// channelPublishTimeout bounds one publish: the callers never wait on a
// slow Redis for long.
const channelPublishTimeout = time.Second

// openChannel subscribes to name; listen then starts the receiving.
// go-redis resubscribes after a break by itself.
func openChannel(rdb redis.UniversalClient, name string) *channel {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	ctx, cancel := context.WithCancel(context.Background())
	return &channel{rdb: rdb, name: name, node: hex.EncodeToString(b), ctx: ctx, cancel: cancel, ps: rdb.Subscribe(ctx, name)}
}

// listen hands every payload to handle, in order, on one goroutine.
func (c *channel) listen(handle func(ctx context.Context, payload string)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// The Go channel ends when close closes ps (not when ctx ends).
		for msg := range c.ps.Channel() {
			handle(c.ctx, msg.Payload)
		}
	}()
}

// publish sends one payload, bounded by channelPublishTimeout.
func (c *channel) publish(b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, channelPublishTimeout)
	defer cancel()
	return c.rdb.Publish(ctx, c.name, b).Err()
}

// goBackground runs f on a goroutine that close waits for; f returns when
// its ctx ends.
func (c *channel) goBackground(f func(ctx context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f(c.ctx)
	}()
}

// close stops receiving and the background goroutines; before the Redis
// client closes.
func (c *channel) close() {
	c.cancel()
	_ = c.ps.Close()
	c.wg.Wait()
}

package chatserver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RedisSequencer allocates per-conversation sequence numbers on a Redis
// shared by every chat node: one INCR per allocation, in a script that
// never answers at or below the node's floor for the conversation — the
// highest seq the node knows to be stored or has itself allocated, seeded
// from the store the first time the node uses the conversation.
//
// Redis may lose counters (a restart without persistence, FLUSHALL, a
// failover to a replica that missed the last increments). A missing or
// stale counter is lifted above the floor by the script, so this node
// never reissues what it has seen. A seq written by another node that
// this node has not seen can still be handed out once; the store's
// primary key (conv, seq) refuses that write, nothing is acknowledged,
// and the caller raises the floor from the store with Refresh and
// allocates again. No seq reaches a client without being a stored row, so
// none is ever issued twice. docs/scale-out.md has the whole argument.
type RedisSequencer struct {
	rdb    redis.Scripter
	store  seqFloorStore
	prefix string

	mu    sync.Mutex
	convs map[string]*seqFloor

	// failing is set by an allocation Redis refused and cleared by the
	// next one it answers (or by Healthy's probe).
	failing atomic.Bool
}

type seqFloor struct {
	once sync.Once
	err  error
	mu   sync.Mutex
	n    uint64
}

var _ Sequencer = (*RedisSequencer)(nil)

// nextSeq is INCR lifted above a floor. KEYS[1] is the counter, ARGV[1]
// the floor. Lua numbers are doubles: exact up to 2^53, which no
// conversation reaches.
var nextSeq = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
return n
`)

// DefaultSeqPrefix starts every counter's key.
const DefaultSeqPrefix = "roomnet:seq:"

// NewRedisSequencer returns a sequencer on rdb whose floors are seeded
// from store; keys are prefix+conv (DefaultSeqPrefix when empty).
func NewRedisSequencer(rdb redis.Scripter, store seqFloorStore, prefix string) *RedisSequencer {
	if prefix == "" {
		prefix = DefaultSeqPrefix
	}
	return &RedisSequencer{rdb: rdb, store: store, prefix: prefix, convs: map[string]*seqFloor{}}
}

// Next implements Sequencer. It fails fast when Redis is unreachable
// (the client's timeouts); nothing is allocated then.
func (s *RedisSequencer) Next(ctx context.Context, conv string) (uint64, error) {
	f, err := s.floor(ctx, conv)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	floor := f.n
	f.mu.Unlock()
	n, err := nextSeq.Run(ctx, s.rdb, []string{s.prefix + conv}, floor).Uint64()
	if err != nil {
		s.failing.Store(true)
		return 0, fmt.Errorf("%w: allocating seq on redis: %w", ErrSeqUnavailable, err)
	}
	s.failing.Store(false)
	f.raise(n)
	return n, nil
}

// healthKey is the counter Healthy's probe increments: no conversation
// name starts with an underscore.
const healthKey = "_health"

// Healthy reports nil unless the last allocation failed on Redis and a
// probe (the allocation script on a key of its own, so that a read-only
// replica fails it as it fails Next) still fails.
func (s *RedisSequencer) Healthy(ctx context.Context) error {
	if !s.failing.Load() {
		return nil
	}
	if err := nextSeq.Run(ctx, s.rdb, []string{s.prefix + healthKey}, 0).Err(); err != nil {
		return fmt.Errorf("chat sequencer: %w", err)
	}
	s.failing.Store(false)
	return nil
}

// Observe raises the floor of conv to seq: call it for every stored
// message the node learns of (its own writes, the bus), so that a counter
// Redis lost is lifted past them without a store lookup.
func (s *RedisSequencer) Observe(conv string, seq uint64) {
	s.mu.Lock()
	f, ok := s.convs[conv]
	s.mu.Unlock()
	if ok {
		f.raise(seq)
	}
}

// Refresh raises the floor of conv to the store's highest seq. Call it
// when a write was refused because its seq was taken: the next allocation
// is then above everything stored.
func (s *RedisSequencer) Refresh(ctx context.Context, conv string) error {
	f, err := s.floor(ctx, conv)
	if err != nil {
		return err
	}
	n, err := s.store.MaxSeq(ctx, conv)
	if err != nil {
		return fmt.Errorf("reading the stored max seq: %w", err)
	}
	f.raise(n)
	return nil
}

// floor returns conv's floor, seeded from the store on first use (a
// failed seed is tried again on the next call).
func (s *RedisSequencer) floor(ctx context.Context, conv string) (*seqFloor, error) {
	s.mu.Lock()
	f, ok := s.convs[conv]
	if !ok {
		f = &seqFloor{}
		s.convs[conv] = f
	}
	s.mu.Unlock()
	f.once.Do(func() {
		n, err := s.store.MaxSeq(ctx, conv)
		f.err = err
		f.raise(n)
	})
	if f.err != nil {
		s.mu.Lock()
		if s.convs[conv] == f {
			delete(s.convs, conv)
		}
		s.mu.Unlock()
		return nil, fmt.Errorf("seeding seq floor from the store: %w", f.err)
	}
	return f, nil
}

func (f *seqFloor) raise(n uint64) {
	f.mu.Lock()
	if n > f.n {
		f.n = n
	}
	f.mu.Unlock()
}

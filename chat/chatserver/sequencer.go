package chatserver

import (
	"context"
	"errors"
)

// Sequencer allocates per-conversation sequence numbers. A number is
// allocated before its message is written; one that is never written
// becomes a tombstone. MemorySequencer (sequencer_memory.go) is the
// single node's, RedisSequencer (sequencer_redis.go) every node's.
type Sequencer interface {
	Next(ctx context.Context, conv string) (uint64, error)
}

// seqObserver is a Sequencer told of every stored message the node
// learns of (RedisSequencer: its floor).
type seqObserver interface {
	Observe(conv string, seq uint64)
}

// seqRefresher is a Sequencer that can raise its counter of a
// conversation above everything stored.
type seqRefresher interface {
	Refresh(ctx context.Context, conv string) error
}

// seqFloorStore is what a sequencer needs of the store: the highest seq
// stored in a conversation, tombstones included.
type seqFloorStore interface {
	MaxSeq(ctx context.Context, conv string) (uint64, error)
}

// ErrSeqUnavailable marks an allocation the shared sequencer could not
// make (Redis down, read-only, out of memory): nothing was allocated, and
// the send may be retried later.
var ErrSeqUnavailable = errors.New("chat: sequence numbers unavailable")

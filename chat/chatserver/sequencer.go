package chatserver

import (
	"context"
	"sync"
)

// Sequencer allocates per-conversation sequence numbers. A number is
// allocated before its message is written; one that is never written
// becomes a tombstone.
type Sequencer interface {
	Next(ctx context.Context, conv string) (uint64, error)
}

// MemorySequencer counts in process, seeded from the store's highest seq
// the first time a conversation is used. Single node only: with several
// chat nodes use a shared sequencer (Redis INCR).
type MemorySequencer struct {
	store Store
	mu    sync.Mutex
	convs map[string]*seqCounter
}

type seqCounter struct {
	once sync.Once
	err  error
	mu   sync.Mutex
	n    uint64
}

var _ Sequencer = (*MemorySequencer)(nil)

// NewMemorySequencer returns a sequencer seeded from store.
func NewMemorySequencer(store Store) *MemorySequencer {
	return &MemorySequencer{store: store, convs: map[string]*seqCounter{}}
}

// Next implements Sequencer.
func (s *MemorySequencer) Next(ctx context.Context, conv string) (uint64, error) {
	s.mu.Lock()
	c, ok := s.convs[conv]
	if !ok {
		c = &seqCounter{}
		s.convs[conv] = c
	}
	s.mu.Unlock()
	c.once.Do(func() { c.n, c.err = s.store.MaxSeq(ctx, conv) })
	if c.err != nil {
		s.mu.Lock()
		delete(s.convs, conv) // seed again next time
		s.mu.Unlock()
		return 0, c.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n, nil
}

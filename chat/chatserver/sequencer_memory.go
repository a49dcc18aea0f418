package chatserver

import (
	"context"
	"sync"
)

// MemorySequencer counts in process, seeded from the store's highest seq
// the first time a conversation is used. Single node only: with several
// chat nodes use a shared sequencer (Redis INCR).
type MemorySequencer struct {
	store seqFloorStore
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
func NewMemorySequencer(store seqFloorStore) *MemorySequencer {
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

// Refresh raises conv's counter to the store's highest seq (when it is
// seeded; an unseeded one is seeded from the store anyway).
func (s *MemorySequencer) Refresh(ctx context.Context, conv string) error {
	s.mu.Lock()
	c, ok := s.convs[conv]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	c.once.Do(func() { c.n, c.err = s.store.MaxSeq(ctx, conv) })
	if c.err != nil {
		return c.err
	}
	top, err := s.store.MaxSeq(ctx, conv)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.n = max(c.n, top)
	c.mu.Unlock()
	return nil
}

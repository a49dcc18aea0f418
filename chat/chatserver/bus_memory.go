package chatserver

import (
	"context"
	"sync"
)

// MemoryBus delivers in process, synchronously. Single node only.
type MemoryBus struct {
	mu      sync.RWMutex
	handler func(string, []byte)
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus returns an in-process bus.
func NewMemoryBus() *MemoryBus { return &MemoryBus{} }

// Publish implements Bus.
func (b *MemoryBus) Publish(_ context.Context, topic string, payload []byte) error {
	b.mu.RLock()
	h := b.handler
	b.mu.RUnlock()
	if h != nil {
		h(topic, payload)
	}
	return nil
}

// Subscribe implements Bus.
func (b *MemoryBus) Subscribe(h func(string, []byte)) {
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
}

// Close implements Bus.
func (b *MemoryBus) Close() error { return nil }

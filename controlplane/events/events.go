// Package events fans the control plane's membership events out to
// in-process subscribers (chat, the admin panel, tests). Delivery is
// at-most-once: a subscriber that falls behind its buffer loses events and
// sees the loss counted; consumers that need every event re-read state.
// Single node only; cross-node fan-out goes through chat's Bus.
package events

import (
	"context"
	"sync"
	"sync/atomic"

	cp "github.com/roomnet/roomnet/controlplane"
)

// Hub is an in-process event fan-out. The zero value is not usable; use New.
type Hub struct {
	mu      sync.RWMutex
	subs    map[*sub]struct{}
	dropped atomic.Int64
}

type sub struct{ ch chan cp.Event }

// New returns an empty hub.
func New() *Hub { return &Hub{subs: map[*sub]struct{}{}} }

// Publish hands events to every subscriber without blocking.
func (h *Hub) Publish(_ context.Context, events ...cp.Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		for _, e := range events {
			select {
			case s.ch <- e:
			default:
				h.dropped.Add(1)
			}
		}
	}
}

// Subscribe returns a channel of events buffered to size and a function
// that ends the subscription and closes the channel.
func (h *Hub) Subscribe(size int) (<-chan cp.Event, func()) {
	s := &sub{ch: make(chan cp.Event, size)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
			close(s.ch)
		})
	}
}

// Dropped counts events lost to full subscriber buffers.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

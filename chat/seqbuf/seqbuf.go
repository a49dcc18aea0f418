// Package seqbuf orders one conversation's messages by seq: it drops
// duplicates, holds early arrivals in a bounded reorder buffer and
// releases messages once everything below them has arrived. It knows
// nothing about connections; the chat client asks it whether a gap has
// stayed open long enough to fill from history.
package seqbuf

import (
	"time"

	"github.com/roomnet/roomnet/chat"
)

// Buffer is one conversation's reorder buffer. Not safe for concurrent use.
type Buffer struct {
	known      bool
	contiguous uint64
	pending    map[uint64]chat.Message
	max        int
	gapSince   time.Time

	// Duplicates counts messages dropped as already seen.
	Duplicates int
}

// New returns a buffer holding at most max early messages.
func New(max int) *Buffer { return &Buffer{pending: map[uint64]chat.Message{}, max: max} }

// Known reports whether the position has been set.
func (b *Buffer) Known() bool { return b.known }

// Start sets the position: everything up to seq counts as seen. It
// returns the held messages that are now in order.
func (b *Buffer) Start(seq uint64) []chat.Message {
	b.known = true
	b.contiguous = seq
	for s := range b.pending {
		if s <= seq {
			delete(b.pending, s)
		}
	}
	return b.release(time.Now())
}

// Position is the highest seq released with nothing missing below.
func (b *Buffer) Position() uint64 { return b.contiguous }

// Buffered is the number of early messages held.
func (b *Buffer) Buffered() int { return len(b.pending) }

// Push adds m and returns the messages that are now in order, tombstones
// excluded. A buffer without a position holds everything until Start:
// only the server knows where a conversation begins for this client.
func (b *Buffer) Push(m chat.Message, now time.Time) []chat.Message {
	if !b.known {
		if len(b.pending) < b.max {
			b.pending[m.Seq] = m
		}
		return nil
	}
	if m.Seq <= b.contiguous {
		b.Duplicates++
		return nil
	}
	if _, dup := b.pending[m.Seq]; dup {
		b.Duplicates++
		return nil
	}
	if m.Seq != b.contiguous+1 && len(b.pending) >= b.max {
		return nil // dropped; the gap fill fetches it again
	}
	b.pending[m.Seq] = m
	return b.release(now)
}

func (b *Buffer) release(now time.Time) []chat.Message {
	var out []chat.Message
	for {
		next, ok := b.pending[b.contiguous+1]
		if !ok {
			break
		}
		delete(b.pending, next.Seq)
		b.contiguous++
		if !chat.Hidden(next.Kind) {
			out = append(out, next)
		}
	}
	switch {
	case len(b.pending) == 0:
		b.gapSince = time.Time{}
	case b.gapSince.IsZero():
		b.gapSince = now
	}
	return out
}

// GapOpen reports whether messages have been waiting for a missing seq
// for longer than timeout.
func (b *Buffer) GapOpen(now time.Time, timeout time.Duration) bool {
	return !b.gapSince.IsZero() && now.Sub(b.gapSince) > timeout
}

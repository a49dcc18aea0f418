package chatserver

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// CursorStore keeps users' read positions.
type CursorStore interface {
	// SaveCursors raises positions; they never go down.
	SaveCursors(ctx context.Context, cs []Cursor) error
	Cursors(ctx context.Context, userID uint64) ([]Cursor, error)
}

type cursorKey struct {
	user uint64
	conv string
}

// cursorBuffer holds the read positions clients report until the next
// flush writes them in one batch; reads merge it with the store. A
// position only ever goes up.
type cursorBuffer struct {
	store CursorStore
	log   *slog.Logger

	mu       sync.Mutex
	pending  map[cursorKey]Cursor
	flushing map[cursorKey]Cursor // the batch being written
	fails    map[cursorKey]int    // flushes a row failed on its own
}

// cursorAttempts is how many flushes a read position the store refuses
// on its own (while others are saved) is tried.
const cursorAttempts = 5

func newCursorBuffer(store CursorStore, log *slog.Logger) *cursorBuffer {
	return &cursorBuffer{store: store, log: log, pending: map[cursorKey]Cursor{}, fails: map[cursorKey]int{}}
}

// raise records that user has seq of conv delivered, and read when read.
func (b *cursorBuffer) raise(user uint64, conv string, seq uint64, read bool) {
	k := cursorKey{user, conv}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, ok := b.pending[k]
	if !ok {
		cur = Cursor{UserID: user, Conv: conv}
	}
	if read {
		cur.Read = max(cur.Read, seq)
	}
	cur.Delivered = max(cur.Delivered, seq)
	b.pending[k] = cur
}

// flush writes what is pending.
func (b *cursorBuffer) flush() {
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	batch := make([]Cursor, 0, len(b.pending))
	for _, c := range b.pending {
		batch = append(batch, c)
	}
	// Until the write commits, the batch is in neither the map nor the
	// store: of reads it from here meanwhile.
	b.flushing = b.pending
	b.pending = map[cursorKey]Cursor{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.flushing = nil
		b.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.store.SaveCursors(ctx, batch)
	if err == nil {
		return
	}
	// One row the store refuses must not hold back everyone's: save them
	// one by one. When every row fails the store is down and all are kept
	// for the next flush; otherwise a row that keeps failing on its own
	// is dropped after cursorAttempts flushes.
	var failed []Cursor
	for _, c := range batch {
		if b.store.SaveCursors(ctx, []Cursor{c}) != nil {
			failed = append(failed, c)
		}
	}
	storeDown := len(failed) == len(batch)
	b.log.Warn("saving read positions; will retry", "err", err, "failed", len(failed), "of", len(batch))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range failed {
		k := cursorKey{c.UserID, c.Conv}
		if !storeDown {
			b.fails[k]++
			if b.fails[k] >= cursorAttempts {
				delete(b.fails, k)
				b.log.Error("dropping a read position the store keeps refusing", "user", c.UserID, "conv", c.Conv, "read", c.Read, "delivered", c.Delivered)
				continue
			}
		}
		old := b.pending[k]
		old.UserID, old.Conv = c.UserID, c.Conv
		old.Read, old.Delivered = max(old.Read, c.Read), max(old.Delivered, c.Delivered)
		b.pending[k] = old
	}
}

// of merges stored and not yet flushed positions of a user. Memory is
// read before the store: a flush that commits and clears b.flushing
// between the two reads is then seen by the store read, whereas reading
// the store first could miss a position that was in flight during it.
func (b *cursorBuffer) of(ctx context.Context, userID uint64) (map[string]Cursor, error) {
	var pending []Cursor
	b.mu.Lock()
	for _, m := range []map[cursorKey]Cursor{b.flushing, b.pending} {
		for k, c := range m {
			if k.user == userID {
				pending = append(pending, c)
			}
		}
	}
	b.mu.Unlock()
	stored, err := b.store.Cursors(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := map[string]Cursor{}
	for _, c := range append(stored, pending...) {
		old := out[c.Conv]
		old.UserID, old.Conv = c.UserID, c.Conv
		old.Read, old.Delivered = max(old.Read, c.Read), max(old.Delivered, c.Delivered)
		out[c.Conv] = old
	}
	return out, nil
}

// pendingOf returns the buffered position of user in conv (tests).
func (b *cursorBuffer) pendingOf(user uint64, conv string) Cursor {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pending[cursorKey{user, conv}]
}

package chatserver

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MuteStore keeps moderators' mutes.
type MuteStore interface {
	// SaveMute records or replaces a user's mute; DeleteMute lifts it.
	SaveMute(ctx context.Context, m Mute) error
	DeleteMute(ctx context.Context, userID uint64) error
	// Mutes lists the mutes that end after now.
	Mutes(ctx context.Context, now time.Time) ([]Mute, error)
}

// mutes is this node's memory of who is muted until when, read from the
// store at start and after a bus outage and kept current by the mute
// news of every node (moderation.go).
type mutes struct {
	store MuteStore

	mu    sync.Mutex
	until map[uint64]time.Time // user → end of mute
}

func newMutes(store MuteStore) *mutes {
	return &mutes{store: store, until: map[uint64]time.Time{}}
}

// load replaces what is in memory with the store's lasting mutes.
func (m *mutes) load(ctx context.Context) error {
	ms, err := m.store.Mutes(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("loading mutes: %w", err)
	}
	m.mu.Lock()
	clear(m.until)
	for _, mu := range ms {
		m.until[mu.UserID] = mu.Until
	}
	m.mu.Unlock()
	return nil
}

// save stores a mute; publishing it is the caller's.
func (m *mutes) save(ctx context.Context, mu Mute) error {
	if err := m.store.SaveMute(ctx, mu); err != nil {
		return fmt.Errorf("saving mute: %w", err)
	}
	return nil
}

// remove deletes a user's mute from the store; publishing it is the
// caller's.
func (m *mutes) remove(ctx context.Context, userID uint64) error {
	if err := m.store.DeleteMute(ctx, userID); err != nil {
		return fmt.Errorf("lifting mute: %w", err)
	}
	return nil
}

// stored returns a user's lasting mute as the store has it, with its
// reason.
func (m *mutes) stored(ctx context.Context, userID uint64) (Mute, bool, error) {
	ms, err := m.store.Mutes(ctx, time.Now())
	if err != nil {
		return Mute{}, false, fmt.Errorf("reading mutes: %w", err)
	}
	for _, mu := range ms {
		if mu.UserID == userID {
			return mu, true, nil
		}
	}
	return Mute{}, false, nil
}

// apply records a mute, or lifts it when n.Until is zero.
func (m *mutes) apply(n muteNews) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n.Until.IsZero() {
		delete(m.until, n.UserID)
		return
	}
	m.until[n.UserID] = n.Until
}

// of reports until when a user is muted.
func (m *mutes) of(userID uint64) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.until[userID]
	if ok && !until.After(time.Now()) {
		delete(m.until, userID)
		return time.Time{}, false
	}
	return until, ok
}

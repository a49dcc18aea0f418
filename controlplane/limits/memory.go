package limits

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxKeys bounds a Memory's keys unless MemoryOptions says
// otherwise.
const DefaultMaxKeys = 1 << 20

// MemoryOptions configures a Memory.
type MemoryOptions struct {
	// MaxKeys bounds how many keys with a bucket that is not full are
	// remembered (default DefaultMaxKeys). When that many are, a new key
	// is refused rather than an old one forgotten: forgetting would hand
	// an attacker a fresh budget.
	MaxKeys int
	Now     func() time.Time // default time.Now
}

// Memory keeps the buckets in this process: one node only. Keys whose
// bucket is full again are forgotten, so memory follows the keys being
// limited right now.
type Memory struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	tat   map[string]time.Time // when the key's bucket is full again
	swept time.Time
}

// NewMemory returns an empty Memory.
func NewMemory(o MemoryOptions) *Memory {
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Memory{max: o.MaxKeys, now: o.Now, tat: map[string]time.Time{}}
}

// Allow implements Limiter. It never fails.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (bool, time.Duration, error) {
	if !l.valid() {
		return true, 0, nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	tat, known := m.tat[key]
	if !known && len(m.tat) >= m.max {
		return false, l.Every, nil
	}
	ok, wait, next := gcra(now, tat, l)
	if ok {
		m.tat[key] = next
	}
	return ok, wait, nil
}

// Refund implements Limiter. It never fails.
func (m *Memory) Refund(_ context.Context, key string, l Limit) error {
	if !l.valid() {
		return nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	tat, known := m.tat[key]
	if !known {
		return nil
	}
	if tat = tat.Add(-l.Every); tat.After(now) {
		m.tat[key] = tat
	} else {
		delete(m.tat, key)
	}
	return nil
}

// Len is how many keys are remembered.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// gcra decides one action at now for a bucket full again at tat (zero or
// past: full). ok: next is the bucket's new tat. Otherwise wait is how long
// until the next token.
func gcra(now, tat time.Time, l Limit) (ok bool, wait time.Duration, next time.Time) {
	if tat.Before(now) {
		tat = now
	}
	next = tat.Add(l.Every)
	// The action fits if the bucket, after it, is no more than Burst
	// tokens' worth of refill away from full.
	allowAt := next.Add(-time.Duration(l.Burst) * l.Every)
	if allowAt.After(now) {
		return false, allowAt.Sub(now), time.Time{}
	}
	return true, 0, next
}

// sweep forgets the keys whose bucket is full again: once a minute, or
// once a second while the map is full.
func (m *Memory) sweep(now time.Time) {
	since := now.Sub(m.swept)
	if since < time.Minute && (len(m.tat) < m.max || since < time.Second) {
		return
	}
	m.swept = now
	for k, tat := range m.tat {
		if !tat.After(now) {
			delete(m.tat, k)
		}
	}
}

package chatserver

import "sync"

// dedupeKey names one send: a retry repeats all three.
type dedupeKey struct {
	conv   string
	sender uint64
	id     string
}

// dedupe makes a retried send cost nothing new: a retry of a send still
// being written waits for its answer, and one of a send this node stored
// lately is answered from memory (recent). A retry it no longer remembers
// is still stored only once: the store's unique index refuses the copy
// (Server.append answers with the stored seq).
type dedupe struct {
	mu       sync.Mutex
	inflight map[dedupeKey][]func(StoredMessage, error)
	recent   *recent
}

func newDedupe(memory int) *dedupe {
	return &dedupe{inflight: map[dedupeKey][]func(StoredMessage, error){}, recent: newRecent(memory)}
}

// begin registers reply as waiting for send k and reports whether the
// caller is the first (it must then end k with finish or drop); a later
// caller's reply runs when the first finishes.
func (d *dedupe) begin(k dedupeKey, reply func(StoredMessage, error)) (first bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if waiters, ok := d.inflight[k]; ok {
		d.inflight[k] = append(waiters, reply)
		return false
	}
	d.inflight[k] = []func(StoredMessage, error){reply}
	return true
}

// finish answers every reply waiting for k.
func (d *dedupe) finish(k dedupeKey, m StoredMessage, err error) {
	d.mu.Lock()
	waiters := d.inflight[k]
	delete(d.inflight, k)
	d.mu.Unlock()
	for _, w := range waiters {
		w(m, err)
	}
}

// drop ends k without answering the replies waiting for it: the first
// caller answered its own way (refused before anything was stored).
func (d *dedupe) drop(k dedupeKey) {
	d.mu.Lock()
	delete(d.inflight, k)
	d.mu.Unlock()
}

// stored returns what this node stored lately for k: enough to answer a
// retry.
func (d *dedupe) stored(k dedupeKey) (StoredMessage, bool) { return d.recent.get(k) }

// remember records a stored send.
func (d *dedupe) remember(m StoredMessage) { d.recent.add(m) }

package chatserver

import (
	"sync"
	"time"
)

// recent remembers the seqs of the last messages this node stored, by
// (conversation, sender, client message id), so that a retried send is
// answered with its seq without a database lookup. It is bounded (the
// oldest entries go first); a retry it no longer remembers is still
// stored only once: the store's unique index refuses it and the committer
// answers with the stored seq (see append).
type recent struct {
	mu   sync.Mutex
	seqs map[dedupeKey]stored
	ring []dedupeKey
	next int
}

type stored struct {
	seq uint64
	at  time.Time
}

func newRecent(size int) *recent {
	return &recent{seqs: map[dedupeKey]stored{}, ring: make([]dedupeKey, size)}
}

// get returns what was stored for k: enough to answer a retry.
func (r *recent) get(k dedupeKey) (StoredMessage, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.seqs[k]
	return StoredMessage{Conv: k.conv, SenderID: k.sender, ClientMsgID: k.id, Seq: st.seq, CreatedAt: st.at}, ok
}

// add remembers a stored message.
func (r *recent) add(m StoredMessage) {
	k := dedupeKey{m.Conv, m.SenderID, m.ClientMsgID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seqs[k]; ok {
		return
	}
	if old := r.ring[r.next]; old.id != "" {
		delete(r.seqs, old)
	}
	r.ring[r.next] = k
	r.seqs[k] = stored{m.Seq, m.CreatedAt}
	r.next = (r.next + 1) % len(r.ring)
}

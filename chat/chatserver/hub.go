package chatserver

import (
	"sync"

	"github.com/roomnet/roomnet/chat"
)

// hub is this node's set of sessions and who follows which conversation:
// the subscriptions fan-out delivers to. It knows nothing of the store or
// the bus. Its lock also guards conn.loading and conn.lost, so that a
// membership event either reaches a session's subscriptions or is
// recorded against its room load (membership.go).
type hub struct {
	mu     sync.RWMutex
	closed bool // no session is registered any more
	conns  map[*conn]struct{}
	byConv map[string]map[*conn]struct{}
	byUser map[uint64]map[*conn]struct{}
	// loading holds the sessions whose rooms are being loaded.
	loading map[*conn]struct{}
	// sessions counts the registered sessions until their end.
	sessions sync.WaitGroup
}

func newHub() *hub {
	return &hub{
		conns: map[*conn]struct{}{}, byConv: map[string]map[*conn]struct{}{},
		byUser: map[uint64]map[*conn]struct{}{}, loading: map[*conn]struct{}{},
	}
}

// register adds a session, marked as loading its rooms, and counts it in
// h.sessions (given back by done), unless the hub is closed: under h.mu,
// so that close either sees the session or refuses it (a WaitGroup Add
// racing close's Wait would be a bug).
func (h *hub) register(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.sessions.Add(1)
	h.conns[c] = struct{}{}
	c.loading, c.lost = true, map[string]bool{}
	h.loading[c] = struct{}{}
	if h.byUser[c.user.ID] == nil {
		h.byUser[c.user.ID] = map[*conn]struct{}{}
	}
	h.byUser[c.user.ID][c] = struct{}{}
	for conv := range c.convs {
		h.subscribeLocked(c, conv)
	}
	return true
}

// unregister removes a session; done gives back its count afterwards.
func (h *hub) unregister(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, c)
	delete(h.loading, c)
	if m := h.byUser[c.user.ID]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(h.byUser, c.user.ID)
		}
	}
	for _, conv := range c.convList() {
		h.unsubscribeLocked(c, conv)
	}
}

// done ends a registered session's count.
func (h *hub) done() { h.sessions.Done() }

// close refuses new sessions and returns the ones there are.
func (h *hub) close() []*conn {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	return h.all()
}

// wait waits for every registered session to end.
func (h *hub) wait() { h.sessions.Wait() }

// all lists the sessions.
func (h *hub) all() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		out = append(out, c)
	}
	return out
}

// subscribe makes c follow conv.
func (h *hub) subscribe(c *conn, conv string) {
	h.mu.Lock()
	h.subscribeLocked(c, conv)
	h.mu.Unlock()
}

// unsubscribe stops c following conv.
func (h *hub) unsubscribe(c *conn, conv string) {
	h.mu.Lock()
	h.unsubscribeLocked(c, conv)
	h.mu.Unlock()
}

func (h *hub) subscribeLocked(c *conn, conv string) {
	if h.byConv[conv] == nil {
		h.byConv[conv] = map[*conn]struct{}{}
	}
	h.byConv[conv][c] = struct{}{}
}

func (h *hub) unsubscribeLocked(c *conn, conv string) {
	if m := h.byConv[conv]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(h.byConv, conv)
		}
	}
}

// targets lists the connections that receive conv: its subscribers, and
// for a direct conversation every connection of its two users (who are
// then allowed to use it).
func (h *hub) targets(conv string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*conn
	if kind, _ := chat.ConvKind(conv); kind == chat.KindDirect {
		a, b, _ := chat.DirectUsers(conv)
		for _, id := range []uint64{a, b} {
			for c := range h.byUser[id] {
				c.allow(conv)
				out = append(out, c)
			}
		}
		return out
	}
	for c := range h.byConv[conv] {
		out = append(out, c)
	}
	return out
}

// counts returns the number of sessions and of users with one.
func (h *hub) counts() (conns, users int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns), len(h.byUser)
}

// anyOf returns a session of user, or nil (tests).
func (h *hub) anyOf(user uint64) *conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.byUser[user] {
		return c
	}
	return nil
}

package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roomnet/roomnet/controlplane/headscale"
)

// hsDouble stands in for a Headscale shard in the service's fast tests:
// the edge the service drives over gRPC. The end-to-end tests in roomnetd
// run the real one. It keeps users, keys and nodes in memory and can be
// taken down (every call fails, as with a dead child) and brought back.
type hsDouble struct {
	mu     sync.Mutex
	down   bool
	nextID uint64
	users  map[uint64]headscale.User
	keys   map[uint64]headscale.PreAuthKey
	nodes  map[uint64]headscale.Node
	policy string
	calls  int
	noKeys bool // CreatePreAuthKey fails
	// afterList, when set, runs (under mu) after ListNodes made its answer:
	// what Headscale does next, e.g. finish a registration in flight.
	afterList func()
}

var _ Headscale = (*hsDouble)(nil)

func newHSDouble() *hsDouble {
	return &hsDouble{users: map[uint64]headscale.User{}, keys: map[uint64]headscale.PreAuthKey{}, nodes: map[uint64]headscale.Node{}}
}

var errDown = errors.New("headscale double: connection refused")

func (h *hsDouble) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
}

func (h *hsDouble) failKeys(fail bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noKeys = fail
}

// enter counts a call and fails it when down; callers hold mu.
func (h *hsDouble) enter() error {
	h.calls++
	if h.down {
		return errDown
	}
	return nil
}

func (h *hsDouble) id() uint64 { h.nextID++; return h.nextID }

// register brings a node up with a key, as tailscale up would.
func (h *hsDouble) register(key string) (headscale.Node, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, k := range h.keys {
		if k.Key != key {
			continue
		}
		if k.Used || time.Now().After(k.Expiration) {
			return headscale.Node{}, errors.New("key used or expired")
		}
		k.Used = true
		h.keys[id] = k
		n := headscale.Node{ID: h.id(), Name: fmt.Sprintf("node%d", id), UserID: k.UserID, UserName: h.users[k.UserID].Name, Online: true, PreAuthKeyID: id}
		h.nodes[n.ID] = n
		return n, nil
	}
	return headscale.Node{}, errors.New("unknown key")
}

// node returns a node and whether it still exists.
func (h *hsDouble) node(id uint64) (headscale.Node, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[id]
	return n, ok
}

func (h *hsDouble) Health(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.enter()
}

func (h *hsDouble) CreateUser(_ context.Context, name string) (headscale.User, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return headscale.User{}, err
	}
	u := headscale.User{ID: h.id(), Name: name, CreatedAt: time.Now()}
	h.users[u.ID] = u
	return u, nil
}

func (h *hsDouble) ListUsers(context.Context) ([]headscale.User, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return nil, err
	}
	var out []headscale.User
	for _, u := range h.users {
		out = append(out, u)
	}
	return out, nil
}

func (h *hsDouble) DeleteUser(_ context.Context, id uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return err
	}
	if _, ok := h.users[id]; !ok {
		return headscale.ErrNotFound
	}
	delete(h.users, id)
	return nil
}

func (h *hsDouble) CreatePreAuthKey(_ context.Context, userID uint64, ephemeral bool, ttl time.Duration) (headscale.PreAuthKey, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return headscale.PreAuthKey{}, err
	}
	if h.noKeys {
		return headscale.PreAuthKey{}, errDown
	}
	if _, ok := h.users[userID]; !ok {
		return headscale.PreAuthKey{}, headscale.ErrNotFound
	}
	id := h.id()
	k := headscale.PreAuthKey{ID: id, Key: fmt.Sprintf("hskey-%d", id), UserID: userID, Ephemeral: ephemeral, Expiration: time.Now().Add(ttl), CreatedAt: time.Now()}
	h.keys[id] = k
	return k, nil
}

func (h *hsDouble) ListPreAuthKeys(context.Context) ([]headscale.PreAuthKey, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return nil, err
	}
	var out []headscale.PreAuthKey
	for _, k := range h.keys {
		out = append(out, k)
	}
	return out, nil
}

func (h *hsDouble) ExpirePreAuthKey(_ context.Context, id uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return err
	}
	k, ok := h.keys[id]
	if !ok {
		return headscale.ErrNotFound
	}
	k.Expiration = time.Now().Add(-time.Second)
	h.keys[id] = k
	return nil
}

func (h *hsDouble) DeletePreAuthKey(_ context.Context, id uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return err
	}
	if _, ok := h.keys[id]; !ok {
		return headscale.ErrNotFound
	}
	delete(h.keys, id)
	return nil
}

func (h *hsDouble) ListNodes(_ context.Context, user string) ([]headscale.Node, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return nil, err
	}
	var out []headscale.Node
	for _, n := range h.nodes {
		if user == "" || n.UserName == user {
			out = append(out, n)
		}
	}
	if h.afterList != nil {
		h.afterList()
	}
	return out, nil
}

// registerInFlight creates a node for a key whose check passed before the
// key was expired (callers hold mu).
func (h *hsDouble) registerInFlight(keyID uint64) headscale.Node {
	k := h.keys[keyID]
	n := headscale.Node{ID: h.id(), Name: fmt.Sprintf("late%d", keyID), UserID: k.UserID, UserName: h.users[k.UserID].Name, Online: true, PreAuthKeyID: keyID}
	h.nodes[n.ID] = n
	return n
}

func (h *hsDouble) ExpireNode(_ context.Context, id uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return err
	}
	n, ok := h.nodes[id]
	if !ok {
		return headscale.ErrNotFound
	}
	n.Online = false
	h.nodes[id] = n
	return nil
}

func (h *hsDouble) DeleteNode(_ context.Context, id uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return err
	}
	if _, ok := h.nodes[id]; !ok {
		return headscale.ErrNotFound
	}
	delete(h.nodes, id)
	return nil
}

func (h *hsDouble) GetPolicy(context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.policy, h.enter()
}

func (h *hsDouble) SetPolicy(_ context.Context, p string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enter(); err != nil {
		return err
	}
	h.policy = p
	return nil
}

package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
)

// A cut takes nodes off a room network: a former member's (their keys
// expired, their nodes expired then deleted) or, for a closed room, every
// node and then the room's Headscale user. The database records the
// membership change first; the cut follows. A cut that Headscale cannot
// take now stays pending and is retried as soon as the shard answers its
// health check, every Options.CutRetry, so the door is not left open
// until the next reconciliation.

// pendingCut is one cut to make.
type pendingCut struct {
	room   cp.Room
	userID uint64   // 0: the whole room (it is closed)
	keys   []uint64 // the member's recorded join keys
}

func (p pendingCut) id() string { return fmt.Sprintf("%s/%d", p.room.ID, p.userID) }

// cuts holds the pending cuts of this process.
type cuts struct {
	mu       sync.Mutex
	byID     map[string]pendingCut
	retrying bool
}

// cut cuts a former member off (under the room's lock). A nil error means
// their keys are expired and their nodes expired, so they and their peers
// drop each other now; an ErrUnavailable error means the cut is pending.
func (s *Service) cut(ctx context.Context, room cp.Room, userID uint64) error {
	keys, err := s.store.JoinKeysOf(context.WithoutCancel(ctx), room.ID, userID)
	if err != nil {
		return fmt.Errorf("cutting member off: listing their keys: %w", err)
	}
	p := pendingCut{room: room, userID: userID}
	for _, k := range keys {
		p.keys = append(p.keys, k.KeyID)
	}
	return s.runCut(ctx, p)
}

// teardown cuts every node of a closed room off (under the room's lock).
func (s *Service) teardown(ctx context.Context, room cp.Room) error {
	return s.runCut(ctx, pendingCut{room: room})
}

// runCut tries p now; on failure it keeps p for the retrier.
func (s *Service) runCut(ctx context.Context, p pendingCut) error {
	err := s.tryCut(ctx, p)
	s.cuts.mu.Lock()
	defer s.cuts.mu.Unlock()
	if err == nil {
		delete(s.cuts.byID, p.id())
		return nil
	}
	s.log.Warn("cutting nodes off failed; retrying as soon as headscale answers", "room", p.room.ID, "err", err)
	if s.cuts.byID == nil {
		s.cuts.byID = map[string]pendingCut{}
	}
	s.cuts.byID[p.id()] = p
	if !s.cuts.retrying && !s.closed() {
		s.cuts.retrying = true
		s.pending.Add(1)
		go s.retryCuts()
	}
	return fmt.Errorf("%w: the change is recorded, cutting the nodes off is pending: %v", cp.ErrUnavailable, err)
}

// pendingCutOf returns the pending cut of a member (userID 0: of a closed
// room), for a retried request.
func (s *Service) pendingCutOf(roomID string, userID uint64) (pendingCut, bool) {
	s.cuts.mu.Lock()
	defer s.cuts.mu.Unlock()
	p, ok := s.cuts.byID[pendingCut{room: cp.Room{ID: roomID}, userID: userID}.id()]
	return p, ok
}

// PendingCuts counts the cuts waiting for Headscale.
func (s *Service) PendingCuts() int {
	s.cuts.mu.Lock()
	defer s.cuts.mu.Unlock()
	return len(s.cuts.byID)
}

func (s *Service) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// retryCuts retries pending cuts on shards that answer their health check
// until none is left or the service closes.
func (s *Service) retryCuts() {
	defer s.pending.Done()
	t := time.NewTicker(s.opts.CutRetry)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			s.cuts.mu.Lock()
			s.cuts.retrying = false
			s.cuts.mu.Unlock()
			return
		case <-t.C:
		}
		s.cuts.mu.Lock()
		todo := make([]pendingCut, 0, len(s.cuts.byID))
		for _, p := range s.cuts.byID {
			todo = append(todo, p)
		}
		if len(todo) == 0 {
			s.cuts.retrying = false
			s.cuts.mu.Unlock()
			return
		}
		s.cuts.mu.Unlock()
		healthy := map[string]bool{}
		for _, p := range todo {
			ok, seen := healthy[p.room.Shard]
			if !seen {
				sh, err := s.shard(p.room.Shard)
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err = sh.Client.Health(ctx)
					cancel()
				}
				ok = err == nil
				healthy[p.room.Shard] = ok
			}
			if !ok {
				continue
			}
			unlock := s.lock(p.room.ID)
			if cur, still := s.pendingCutOf(p.room.ID, p.userID); still && slices.Equal(cur.keys, p.keys) {
				if err := s.tryCut(context.Background(), p); err != nil {
					s.log.Warn("retrying a pending cut", "room", p.room.ID, "err", err)
				} else {
					s.cuts.mu.Lock()
					delete(s.cuts.byID, p.id())
					s.cuts.mu.Unlock()
					s.log.Info("pending cut done", "room", p.room.ID)
				}
			}
			unlock()
		}
	}
}

// tryCut makes one attempt at p, bounded by CutTimeout: keys expired
// first, so that no new node registers with them, then the nodes listed
// and expired; their deletion follows after CutGrace.
func (s *Service) tryCut(ctx context.Context, p pendingCut) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CutTimeout)
	defer cancel()
	sh, err := s.shard(p.room.Shard)
	if err != nil {
		return err
	}
	c := sh.Client
	for _, k := range p.keys {
		if err := c.ExpirePreAuthKey(ctx, k); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			return fmt.Errorf("expiring a key: %w", err)
		}
	}
	nodes, err := c.ListNodes(ctx, p.room.HeadscaleUser)
	if err != nil && !errors.Is(err, headscale.ErrNotFound) {
		return fmt.Errorf("listing nodes: %w", err)
	}
	nodes = p.filter(nodes)
	for _, n := range nodes {
		if err := c.ExpireNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			return fmt.Errorf("expiring node %d: %w", n.ID, err)
		}
	}
	s.deleteLater(sh, p, nodes)
	return nil
}

// filter keeps the nodes a cut is about: a member's (registered with one
// of their keys) or, for a closed room, all.
func (p pendingCut) filter(nodes []headscale.Node) []headscale.Node {
	if p.userID == 0 {
		return nodes
	}
	var out []headscale.Node
	for _, n := range nodes {
		if slices.Contains(p.keys, n.PreAuthKeyID) {
			out = append(out, n)
		}
	}
	return out
}

// deleteLater deletes a cut's nodes (and, for a closed room, its Headscale
// user) after CutGrace: Headscale does not tell a deleted node that it is
// gone, but it does tell an expired one, which then stops; deleting at
// once would race that news. It lists the nodes again first: a node whose
// registration was in flight when the keys were expired may have been
// created after the first listing, and is expired and deleted too.
// Reconciliation finishes the job if this process stops first.
func (s *Service) deleteLater(sh Shard, p pendingCut, nodes []headscale.Node) {
	s.afterGrace(func(ctx context.Context) {
		if p.userID == 0 {
			if err := removeHeadscaleUser(ctx, sh.Client, headscale.User{ID: p.room.HeadscaleUserID, Name: p.room.HeadscaleUser}, nil, nil); err != nil {
				s.log.Error("removing a closed room's headscale user; reconciliation will retry", "room", p.room.ID, "err", err)
			}
			return
		}
		again, err := sh.Client.ListNodes(ctx, p.room.HeadscaleUser)
		if err != nil && !errors.Is(err, headscale.ErrNotFound) {
			s.log.Error("listing nodes to delete; reconciliation will retry", "room", p.room.ID, "err", err)
		}
		known := map[uint64]bool{}
		for _, n := range nodes {
			known[n.ID] = true
		}
		for _, n := range p.filter(again) {
			if known[n.ID] {
				continue
			}
			s.log.Info("cut: a node registered while its keys were expired", "room", p.room.ID, "node", n.ID)
			if err := sh.Client.ExpireNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
				s.log.Error("expiring node", "room", p.room.ID, "node", n.ID, "err", err)
			}
			nodes = append(nodes, n)
		}
		for _, n := range nodes {
			if err := sh.Client.DeleteNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
				s.log.Error("deleting node; reconciliation will retry", "room", p.room.ID, "node", n.ID, "err", err)
			}
		}
	})
}

// afterGrace runs fn after CutGrace (at once when the service closes),
// with CutTimeout to do it in; Close waits for it.
func (s *Service) afterGrace(fn func(ctx context.Context)) {
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		select {
		case <-time.After(s.opts.CutGrace):
		case <-s.closing:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CutTimeout)
		defer cancel()
		fn(ctx)
	}()
}

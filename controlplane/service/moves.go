package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/store"
)

// A lost shard. A shard that stays unhealthy for longer than
// Options.ShardGrace is lost: each of its open rooms moves to a healthy
// shard, one room at a time under the room's lock and in one transaction
// (a new Headscale user there; rooms.shard and the Headscale user id
// updated; memberships kept), and a room_moved event goes out. Members
// then ask for a fresh key (POST /rooms/{id}/key), which is minted on the
// room's new shard. A lost shard that answers again is quarantined: it
// takes no new rooms and admits no relay traffic until it has been
// reconciled — every Headscale user on it that is not an open room placed
// there (the rooms that moved away) is deleted with its nodes, which cuts
// the nodes left behind. With a single shard nothing moves.

// moveRooms moves the open rooms of every lost shard; the health loop
// calls it after each round of checks. Every node finds a shard lost by
// itself (and stops placing rooms on it), but only the node that holds
// Options.Lease moves rooms and tells the others (shardnotes.go).
func (s *Service) moveRooms(ctx context.Context) {
	if len(s.names) < 2 || s.opts.ShardGrace < 0 {
		return
	}
	now := s.now()
	var lost, pending []string
	s.loads.mu.Lock()
	for _, n := range s.names {
		l := s.loads.byName[n]
		if l.checked && !l.healthy && !l.downSince.IsZero() && now.Sub(l.downSince) >= s.opts.ShardGrace {
			if !l.lost {
				s.log.Warn("headscale shard lost: it takes no new rooms; the deciding node moves its rooms", "shard", n, "down_for", now.Sub(l.downSince).Round(time.Second))
			}
			l.lost = true
			if l.lostSince.IsZero() || l.downSince.Before(l.lostSince) {
				l.lostSince = l.downSince
			}
			lost = append(lost, n)
		} else if l.quarantined {
			pending = append(pending, n)
		}
	}
	s.loads.mu.Unlock()
	if len(lost)+len(pending) == 0 || !s.decides(ctx) {
		return
	}
	// The others hear it every round until the shard is reconciled, so
	// that a note lost on the way (Redis blips) is made good.
	for _, n := range append(lost, pending...) {
		s.notifyShard(ShardNote{Shard: n, State: ShardNoteLost})
	}
	for _, n := range lost {
		rooms, err := s.store.OpenRooms(ctx, n)
		if err != nil {
			s.log.Warn("listing a lost shard's rooms", "shard", n, "err", err)
			continue
		}
		for _, r := range rooms {
			if ctx.Err() != nil {
				return
			}
			if err := s.moveRoom(ctx, r.ID, n); err != nil {
				s.log.Warn("moving a room off a lost shard; retrying at the next check", "room", r.ID, "shard", n, "err", err)
			}
		}
	}
}

// errMovedMeanwhile: the room was closed or moved by someone else.
var errMovedMeanwhile = errors.New("the room was closed or moved meanwhile")

// moveRoom moves one open room off shard from onto the best healthy
// shard and publishes room_moved.
func (s *Service) moveRoom(ctx context.Context, roomID, from string) error {
	defer s.lock(roomID)()
	to, err := s.pickMoveTarget(ctx, from)
	if err != nil {
		return err
	}
	// A new name per move: another node moving the same room at the same
	// moment must not find this user taken, nor delete it.
	name := fmt.Sprintf("%s%s-%d", RoomUserPrefix, roomID, s.now().UnixNano())
	hsUser, err := to.Client.CreateUser(ctx, name)
	if err != nil {
		return unavailable(fmt.Errorf("shard %s: %w", to.Name, err))
	}
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if !r.Open() || r.Shard != from {
			return errMovedMeanwhile
		}
		r.Shard, r.HeadscaleUserID, r.HeadscaleUser = to.Name, hsUser.ID, hsUser.Name
		return tx.SaveRoom(&r)
	})
	if err != nil {
		if derr := to.Client.DeleteUser(context.WithoutCancel(ctx), hsUser.ID); derr != nil {
			s.log.Warn("removing the headscale user of a move that did not happen; reconciliation will", "room", roomID, "err", derr)
		}
		if errors.Is(err, errMovedMeanwhile) {
			return nil
		}
		return err
	}
	s.moved.Add(1)
	s.paths.forget(roomID, 0)
	s.log.Info("room moved off a lost headscale shard", "room", roomID, "from", from, "to", to.Name)
	s.publish(ctx, []cp.Event{{Type: cp.EventRoomMoved, RoomID: roomID, At: s.now()}})
	return nil
}

// pickMoveTarget chooses where a lost shard's room goes: by the rules of
// placement among the healthy shards that are neither lost nor
// quarantined; when all of them are at their cap, the least loaded all
// the same (a room must live somewhere).
func (s *Service) pickMoveTarget(ctx context.Context, from string) (Shard, error) {
	counts, err := s.store.CountOpenRooms(ctx)
	if err != nil {
		return Shard{}, fmt.Errorf("counting rooms per shard: %w", err)
	}
	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	best, bestLoad, bestUnder := "", 0, false
	for _, n := range s.names {
		l := s.loads.byName[n]
		if n == from || !l.checked || !l.healthy || l.lost || l.quarantined {
			continue
		}
		load := l.nodes + l.grants
		under := s.opts.ShardNodeCap <= 0 || load < s.opts.ShardNodeCap
		better := best == "" || (under && !bestUnder) ||
			(under == bestUnder && (load < bestLoad || (load == bestLoad && counts[n] < counts[best])))
		if better {
			best, bestLoad, bestUnder = n, load, under
		}
	}
	if best == "" {
		return Shard{}, fmt.Errorf("%w: no healthy Headscale shard to move rooms to", cp.ErrUnavailable)
	}
	return s.shards[best], nil
}

// reconcileReturned reconciles every quarantined shard that answers
// again, and lifts its quarantine once that succeeded. Only the node that
// holds Options.Lease reconciles; it tells the others, which lift their
// quarantine then (shardnotes.go).
func (s *Service) reconcileReturned(ctx context.Context) {
	var back []string
	s.loads.mu.Lock()
	for _, n := range s.names {
		if l := s.loads.byName[n]; l.quarantined && l.healthy {
			back = append(back, n)
		}
	}
	s.loads.mu.Unlock()
	if len(back) == 0 {
		return
	}
	if !s.decides(ctx) {
		s.liftUnconfirmedQuarantines(back)
		return
	}
	for _, n := range back {
		var rep Report
		// Users created since the shard went down are spared: they are
		// not the moved rooms' (another node that never found the shard
		// lost may have placed a room there meanwhile); every older room
		// user that no open room placed there accounts for is stale.
		s.loads.mu.Lock()
		since := s.loads.byName[n].lostSince
		s.loads.mu.Unlock()
		grace := time.Duration(0)
		if !since.IsZero() {
			grace = max(0, s.now().Sub(since))
		}
		err := s.reconcileShard(ctx, s.shards[n], &rep, grace)
		if err != nil {
			s.log.Warn("reconciling a shard that came back; it stays quarantined", "shard", n, "err", err)
			continue
		}
		s.loads.mu.Lock()
		l := s.loads.byName[n]
		l.quarantined, l.lostSince = false, time.Time{}
		s.loads.mu.Unlock()
		s.notifyShard(ShardNote{Shard: n, State: ShardNoteReconciled})
		s.log.Info("headscale shard reconciled after its loss: it takes new rooms again", "shard", n,
			"users", rep.Users, "nodes", rep.Nodes, "keys", rep.Keys)
	}
}

// RoomsMoved counts the rooms this process moved off lost shards.
func (s *Service) RoomsMoved() uint64 { return s.moved.Load() }

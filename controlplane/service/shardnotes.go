package service

import (
	"context"
	"time"
)

// One decision per deployment. Every node checks every shard and stops
// placing rooms on one it finds lost, but only the node that holds
// Options.Lease (the reconciler's) moves a lost shard's rooms and
// reconciles it when it comes back. That node tells the others through a
// ShardNotifier: "lost" every health round while the shard is lost or
// waits to be reconciled (so a note lost on the way is made good), then
// "reconciled" once. A node told "lost" takes no new rooms there and, if
// it sees the shard healthy, quarantines it until it is told
// "reconciled". The moves themselves need no note: a room's shard is its
// row, which every node reads. Without a notifier (one node) the holder
// is the only node.
//
// A node that was never told (it found the shard lost by itself, but the
// deciding node did not) lifts its quarantine when the shard has been
// healthy for ShardGrace (and three health rounds) and no "lost" note
// arrived in that time. That is
// safe even when the notes were only delayed: the deciding node spares
// the Headscale users created since the shard went down.

// Shard note states.
const (
	ShardNoteLost       = "lost"
	ShardNoteReconciled = "reconciled"
)

// ShardNote is what the deciding node tells the others about a shard.
type ShardNote struct {
	Shard string `json:"shard"`
	State string `json:"state"` // ShardNoteLost or ShardNoteReconciled
}

// ShardNotifier carries shard notes to the other nodes (at most once).
type ShardNotifier interface {
	NotifyShard(ShardNote)
}

// SetShardNotifier makes the service tell the other nodes what it decides
// about lost shards. Set it before the health loop runs.
func (s *Service) SetShardNotifier(n ShardNotifier) { s.notes.Store(&n) }

func (s *Service) notifyShard(n ShardNote) {
	if p := s.notes.Load(); p != nil {
		(*p).NotifyShard(n)
	}
}

// decides reports whether this node holds the lease under which lost
// shards are handled (always, without a lease).
func (s *Service) decides(ctx context.Context) bool {
	if s.opts.Lease == nil {
		return true
	}
	held, err := s.opts.Lease.TryAcquire(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("lease unavailable: lost shards wait for the deciding node", "err", err)
	}
	return held && err == nil
}

// ApplyShardNote applies what the deciding node said about a shard. Notes
// of unknown shards and states are ignored (a node with another shard
// list is misconfigured; its /readyz does not say so, its logs do).
func (s *Service) ApplyShardNote(n ShardNote) {
	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	l, ok := s.loads.byName[n.Shard]
	if !ok {
		s.log.Warn("a note about a shard this node does not have: check that every node lists the same shards", "shard", n.Shard)
		return
	}
	now := s.now()
	switch n.State {
	case ShardNoteLost:
		l.noteAt = now
		if l.lostSince.IsZero() {
			l.lostSince = now.Add(-s.opts.ShardGrace)
		}
		if l.lost || l.quarantined {
			return
		}
		if l.checked && !l.healthy {
			l.lost = true
			s.log.Warn("headscale shard lost, says the deciding node: it takes no new rooms", "shard", n.Shard)
			return
		}
		l.quarantined = true
		s.log.Warn("headscale shard lost, says the deciding node: quarantined here until it is reconciled", "shard", n.Shard)
	case ShardNoteReconciled:
		if !l.lost && !l.quarantined {
			return
		}
		l.lost, l.quarantined, l.lostSince, l.noteAt = false, false, time.Time{}, time.Time{}
		s.log.Info("headscale shard reconciled by the deciding node: it takes new rooms again", "shard", n.Shard)
	}
}

// liftUnconfirmedQuarantines lifts the quarantine of the shards in back
// (quarantined, healthy) that the deciding node has not called lost for
// ShardGrace (at least three health rounds, since it repeats the note
// once a round) while they were healthy: this node alone found them lost.
func (s *Service) liftUnconfirmedQuarantines(back []string) {
	now := s.now()
	wait := max(s.opts.ShardGrace, 3*time.Duration(s.roundEvery.Load()))
	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	for _, n := range back {
		l := s.loads.byName[n]
		last := l.upSince
		if l.noteAt.After(last) {
			last = l.noteAt
		}
		if last.IsZero() || now.Sub(last) < wait {
			continue
		}
		l.quarantined, l.lostSince, l.noteAt = false, time.Time{}, time.Time{}
		s.log.Info("headscale shard quarantined here but never called lost by the deciding node: it takes new rooms again", "shard", n)
	}
}

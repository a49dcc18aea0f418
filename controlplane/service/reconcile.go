package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/roomnet/roomnet/controlplane/headscale"
)

// IsolationPolicy is the constant Headscale policy that isolates every
// room: each room is its own Headscale user, and members reach only nodes
// of their own user. Creating a room never rewrites it.
const IsolationPolicy = `{"acls":[{"action":"accept","src":["autogroup:member"],"dst":["autogroup:self:*"]}]}`

// Report counts what a reconciliation removed.
type Report struct {
	Users, Nodes, Keys int
	PolicySet          bool
}

// EnsurePolicy sets the isolation policy on every shard where it differs.
func (s *Service) EnsurePolicy(ctx context.Context) (changed bool, err error) {
	for _, n := range s.names {
		c := s.shards[n].Client
		cur, err := c.GetPolicy(ctx)
		if err != nil {
			return changed, fmt.Errorf("shard %s: %w", n, err)
		}
		if strings.TrimSpace(cur) == IsolationPolicy {
			continue
		}
		if err := c.SetPolicy(ctx, IsolationPolicy); err != nil {
			return changed, fmt.Errorf("shard %s: %w", n, err)
		}
		changed = true
	}
	return changed, nil
}

// Reconcile makes every shard match the database: the isolation policy is
// in force; Headscale users of rooms that are not open, nodes that no
// active member registered, and unused keys nobody may use are removed.
// Headscale is listed before the database is read, so anything the
// database grants by then is seen.
func (s *Service) Reconcile(ctx context.Context) (Report, error) {
	var rep Report
	changed, err := s.EnsurePolicy(ctx)
	rep.PolicySet = changed
	if err != nil {
		return rep, fmt.Errorf("reconciling policy: %w", err)
	}
	var errs []error
	for _, n := range s.names {
		if err := s.reconcileShard(ctx, s.shards[n], &rep); err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", n, err))
		}
	}
	return rep, errors.Join(errs...)
}

func (s *Service) reconcileShard(ctx context.Context, sh Shard, rep *Report) error {
	c := sh.Client
	users, err := c.ListUsers(ctx)
	if err != nil {
		return err
	}
	nodes, err := c.ListNodes(ctx, "")
	if err != nil {
		return err
	}
	keys, err := c.ListPreAuthKeys(ctx)
	if err != nil {
		return err
	}
	rooms, err := s.store.OpenRooms(ctx, sh.Name)
	if err != nil {
		return err
	}
	active, err := s.store.ActiveMembersByRoom(ctx, sh.Name)
	if err != nil {
		return err
	}
	recorded, err := s.store.JoinKeys(ctx, sh.Name)
	if err != nil {
		return err
	}
	now := s.now()
	openByUser := map[uint64]string{} // headscale user id → room id
	for _, r := range rooms {
		openByUser[r.HeadscaleUserID] = r.ID
	}
	roomUser := map[uint64]bool{}
	for _, u := range users {
		roomUser[u.ID] = strings.HasPrefix(u.Name, RoomUserPrefix)
	}
	owner := map[uint64]struct {
		room string
		user uint64
	}{}
	for _, k := range recorded {
		owner[k.KeyID] = struct {
			room string
			user uint64
		}{k.RoomID, k.UserID}
	}

	var errs []error
	// Users of rooms that are not open: nodes, keys, user.
	for _, u := range users {
		if !roomUser[u.ID] {
			continue
		}
		if _, open := openByUser[u.ID]; open || now.Sub(u.CreatedAt) < s.opts.ReconcileGrace {
			continue
		}
		if err := removeHeadscaleUser(ctx, c, u, nodes, keys); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range nodes {
			if n.UserID == u.ID {
				rep.Nodes++
			}
		}
		for _, k := range keys {
			if k.UserID == u.ID {
				rep.Keys++
			}
		}
		rep.Users++
		s.log.Info("reconcile: removed headscale user of a closed or unknown room", "user", u.Name)
	}
	// Nodes in open rooms that no active member of that room registered.
	for _, n := range nodes {
		roomID, open := openByUser[n.UserID]
		if !open {
			continue
		}
		o, known := owner[n.PreAuthKeyID]
		if known && o.room == roomID && active[roomID][o.user] {
			continue
		}
		if err := c.DeleteNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		rep.Nodes++
		s.log.Info("reconcile: removed node no active member accounts for", "room", roomID, "node", n.ID)
	}
	// Unused keys of open rooms that are expired, unrecorded or whose
	// member is gone.
	for _, k := range keys {
		roomID, open := openByUser[k.UserID]
		if !open || k.Used {
			continue
		}
		o, known := owner[k.ID]
		expired := !k.Expiration.IsZero() && now.After(k.Expiration)
		stale := (!known && now.Sub(k.CreatedAt) >= s.opts.ReconcileGrace) || (known && (o.room != roomID || !active[roomID][o.user]))
		if !expired && !stale {
			continue
		}
		if err := c.DeletePreAuthKey(ctx, k.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		rep.Keys++
	}
	return errors.Join(errs...)
}

// RunReconciler reconciles every interval until ctx ends, and removes
// expired bearer tokens as it goes.
func (s *Service) RunReconciler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := s.Reconcile(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("reconciliation incomplete", "err", err)
		}
		if n, err := s.store.DeleteExpiredTokens(ctx, s.now()); err != nil && ctx.Err() == nil {
			s.log.Warn("removing expired tokens", "err", err)
		} else if n > 0 {
			s.log.Debug("removed expired tokens", "count", n)
		}
		if rep.Users+rep.Nodes+rep.Keys > 0 || rep.PolicySet {
			s.log.Info("reconciled", "users", rep.Users, "nodes", rep.Nodes, "keys", rep.Keys, "policy_set", rep.PolicySet)
		}
	}
}

package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
	"github.com/roomnet/roomnet/controlplane/store"
)

// IsolationPolicy is the constant Headscale policy that isolates every
// room: each room is its own Headscale user, and members reach only nodes
// of their own user. Creating a room never rewrites it.
//
// Its grant lets a room's members use each other as peer relays
// (tailscale.com/cap/relay; Headscale adds the companion cap/relay-target)
// and nobody else: autogroup:self is compiled per node to the node's own
// room. A member relays only when its node runs a relay server (the CLI's
// --relay-port); without one the grant changes nothing.
const IsolationPolicy = `{"acls":[{"action":"accept","src":["autogroup:member"],"dst":["autogroup:self:*"]}],` +
	`"grants":[{"src":["autogroup:member"],"dst":["autogroup:self"],"app":{"tailscale.com/cap/relay":[{}]}}]}`

// IsolationPolicyNoPeerRelays is IsolationPolicy without the relay grant
// (rooms.peer_relays off): members reach each other directly or through
// DERP, never through a roommate.
const IsolationPolicyNoPeerRelays = `{"acls":[{"action":"accept","src":["autogroup:member"],"dst":["autogroup:self:*"]}]}`

// policy is the isolation policy this service keeps on every shard.
func (s *Service) policy() string {
	if s.opts.NoPeerRelays {
		return IsolationPolicyNoPeerRelays
	}
	return IsolationPolicy
}

// Report counts what a reconciliation removed.
type Report struct {
	Users, Nodes, Keys int
	PolicySet          bool
	// Evicted counts memberships of banned users ended; Abandoned, rooms
	// closed because their host never got a key.
	Evicted, Abandoned int
}

// EnsurePolicy sets the isolation policy on every shard where it differs.
// A shard that does not answer does not keep the others from it.
func (s *Service) EnsurePolicy(ctx context.Context) (changed bool, err error) {
	var errs []error
	for _, n := range s.names {
		c := s.shards[n].Client
		cur, err := c.GetPolicy(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", n, err))
			continue
		}
		if strings.TrimSpace(cur) == s.policy() {
			continue
		}
		if err := c.SetPolicy(ctx, s.policy()); err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", n, err))
			continue
		}
		changed = true
	}
	return changed, errors.Join(errs...)
}

// Reconcile makes every shard match the database: the isolation policy is
// in force; Headscale users of rooms that are not open, nodes that no
// active member registered, and unused keys nobody may use are removed.
// Headscale is listed before the database is read, so anything the
// database grants by then is seen. A shard that does not answer is
// reported in the error; the others are reconciled all the same.
func (s *Service) Reconcile(ctx context.Context) (Report, error) {
	var rep Report
	changed, err := s.EnsurePolicy(ctx)
	rep.PolicySet = changed
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("reconciling policy: %w", err))
	}
	for _, n := range s.names {
		if err := s.reconcileRooms(ctx, s.shards[n], &rep); err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", n, err))
		}
		if err := s.reconcileShard(ctx, s.shards[n], &rep, s.opts.ReconcileGrace); err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", n, err))
		}
	}
	return rep, errors.Join(errs...)
}

// reconcileRooms ends the half-states the database can hold: memberships
// of banned users (a ban that failed half-way) are ended like a leave,
// their nodes cut off and the events published; rooms whose host never got
// a key (a crash between the room's row and the key) are closed.
func (s *Service) reconcileRooms(ctx context.Context, sh Shard, rep *Report) error {
	var errs []error
	banned, err := s.store.BannedMembers(ctx, sh.Name, s.now())
	if err != nil {
		return err
	}
	for _, m := range banned {
		_, err := s.Leave(ctx, m.User, m.RoomID)
		if errors.Is(err, cp.ErrNotMember) || errors.Is(err, cp.ErrRoomClosed) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
		rep.Evicted++
		s.log.Info("reconcile: a banned user left a room", "room", m.RoomID, "user", m.User.Username)
	}
	keyless, err := s.store.KeylessRooms(ctx, sh.Name, s.now().Add(-s.opts.ReconcileGrace))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range keyless {
		_, err := s.closeRoom(ctx, cp.User{}, r.ID, func(tx *store.Tx, _ cp.Room) error {
			n, err := tx.CountJoinKeys(r.ID)
			if err == nil && n > 0 {
				return errGotKey
			}
			return err
		})
		if errors.Is(err, errGotKey) || errors.Is(err, cp.ErrRoomClosed) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
		rep.Abandoned++
		s.log.Info("reconcile: closed a room whose host never got a key", "room", r.ID)
	}
	return errors.Join(errs...)
}

var errGotKey = errors.New("the room got a key meanwhile")

// reconcileShard reconciles one shard; room users younger than userGrace
// are spared.
func (s *Service) reconcileShard(ctx context.Context, sh Shard, rep *Report, userGrace time.Duration) error {
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
	active, err := s.store.ActiveMembersByRoom(ctx, sh.Name, s.now())
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
		if _, open := openByUser[u.ID]; open || now.Sub(u.CreatedAt) < userGrace {
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
// expired bearer tokens as it goes, while this node holds Options.Lease:
// one node of a deployment reconciles at a time, and the others try to
// take the lease each interval, so that one of them takes over within an
// interval when the holder stops or loses its database connection. It
// releases the lease when ctx ends.
func (s *Service) RunReconciler(ctx context.Context, interval time.Duration) {
	lease := s.opts.Lease
	if lease == nil {
		lease = alwaysHeld{}
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := lease.Release(rctx); err != nil {
			s.log.Warn("releasing the reconciler lease", "err", err)
		}
	}()
	held := false
	// Taken at once, so that the node that starts first reconciles; the
	// start-up pass was done by the caller.
	if !s.takeLease(ctx, lease, &held) && ctx.Err() == nil {
		s.log.Info("reconciler lease held by another node: this node stands by")
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.takeLease(ctx, lease, &held) {
			continue
		}
		s.reconcileOnce(ctx)
	}
}

// takeLease tries the lease and logs when this node starts or stops
// being the one that reconciles.
func (s *Service) takeLease(ctx context.Context, lease Lease, held *bool) bool {
	ok, err := lease.TryAcquire(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("reconciler lease unavailable", "err", err)
	}
	switch {
	case ok && !*held:
		s.log.Info("reconciler lease acquired: this node reconciles")
	case !ok && *held:
		s.log.Warn("reconciler lease lost: another node reconciles")
	}
	*held = ok
	return ok
}

// alwaysHeld is the lease of a node that is alone.
type alwaysHeld struct{}

func (alwaysHeld) TryAcquire(context.Context) (bool, error) { return true, nil }
func (alwaysHeld) Release(context.Context) error            { return nil }

// reconcileOnce is one pass of the reconciler with its logging.
func (s *Service) reconcileOnce(ctx context.Context) {
	rep, err := s.Reconcile(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("reconciliation incomplete", "err", err)
	}
	if n, err := s.store.DeleteExpiredTokens(ctx, s.now()); err != nil && ctx.Err() == nil {
		s.log.Warn("removing expired tokens", "err", err)
	} else if n > 0 {
		s.log.Debug("removed expired tokens", "count", n)
	}
	if rep.Users+rep.Nodes+rep.Keys+rep.Evicted+rep.Abandoned > 0 || rep.PolicySet {
		s.log.Info("reconciled", "users", rep.Users, "nodes", rep.Nodes, "keys", rep.Keys, "policy_set", rep.PolicySet,
			"evicted", rep.Evicted, "abandoned", rep.Abandoned)
	}
}

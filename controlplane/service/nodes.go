package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"tailscale.com/types/key"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
)

// The node view: every node of every shard, as Headscale lists it, named
// by the room and the member it belongs to, with the endpoints roomnet
// has seen it at. Headscale v0.29.3's v1 API does not carry a node's
// client version nor the endpoints it announces (its Hostinfo); roomnet
// knows two kinds of endpoint itself: the address a relay of ours saw
// the node connect from (admission), and the direct endpoints the
// node's roommates' clients report reaching it at.

// NodeView is one node as admins see it.
type NodeView struct {
	Shard string
	headscale.Node
	// Room is the room the node's Headscale user maps onto (zero ID: a
	// Headscale user that is no room of ours).
	Room cp.Room
	// UserID and Username: the member whose join key the node
	// registered with (0 and "": unknown, e.g. a key from before the
	// record, or a node registered by hand).
	UserID   uint64
	Username string
	// RelaySource is the address a relay saw the node connect from, and
	// when (zero: none since this process started).
	RelaySource   netip.Addr
	RelaySourceAt time.Time
	// Endpoints are direct endpoints its roommates reach it at.
	Endpoints []string
}

// ShardNodesError says a shard's nodes could not be listed.
type ShardNodesError struct {
	Shard string
	Err   string
}

// maxRelaySources bounds the relay-seen addresses kept in memory.
const maxRelaySources = 1 << 16

// relaySources remembers, per node key, the last address a relay saw it
// connect from: live telemetry, lost on restart.
type relaySources struct {
	mu    sync.Mutex
	byKey map[string]relaySource
}

type relaySource struct {
	addr netip.Addr
	at   time.Time
}

func (r *relaySources) set(nodeKey string, addr netip.Addr, at time.Time) {
	if !addr.IsValid() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil || len(r.byKey) >= maxRelaySources {
		r.byKey = map[string]relaySource{} // a full map starts over: relays re-admit within minutes
	}
	r.byKey[nodeKey] = relaySource{addr: addr, at: at}
}

func (r *relaySources) get(nodeKey string) (relaySource, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.byKey[nodeKey]
	return v, ok
}

// noteAdmitted records where a relay saw an admitted node.
func (s *Service) noteAdmitted(nodeKey key.NodePublic, source netip.Addr) {
	s.sources.set(nodeKey.String(), source, s.now())
}

// Nodes lists every node of every shard (admins only), by shard, then
// room, then node id. A shard that does not answer is reported in the
// second result; the others are listed all the same.
func (s *Service) Nodes(ctx context.Context, actor cp.User) ([]NodeView, []ShardNodesError, error) {
	if !actor.IsAdmin() {
		return nil, nil, cp.ErrForbidden
	}
	type result struct {
		nodes []NodeView
		err   error
	}
	results := make([]result, len(s.names))
	var wg sync.WaitGroup
	for i, n := range s.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes, err := s.shardNodes(ctx, s.shards[n])
			results[i] = result{nodes, err}
		}()
	}
	wg.Wait()
	var out []NodeView
	var failed []ShardNodesError
	for i, r := range results {
		if r.err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			failed = append(failed, ShardNodesError{Shard: s.names[i], Err: r.err.Error()})
			continue
		}
		out = append(out, r.nodes...)
	}
	now := s.now()
	for i := range out {
		if out[i].Room.ID != "" {
			out[i].Endpoints = s.reportedEndpoints(out[i].Room.ID, out[i].IPs, now)
		}
	}
	return out, failed, nil
}

// shardNodes lists one shard's nodes with their rooms and members.
func (s *Service) shardNodes(ctx context.Context, sh Shard) ([]NodeView, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CutTimeout)
	defer cancel()
	nodes, err := sh.Client.ListNodes(ctx, "")
	if err != nil {
		return nil, err
	}
	var users []string
	for _, n := range nodes {
		if !slices.Contains(users, n.UserName) {
			users = append(users, n.UserName)
		}
	}
	rooms, err := s.store.RoomsOfHeadscaleUsers(ctx, sh.Name, users)
	if err != nil {
		return nil, fmt.Errorf("loading the rooms of the nodes: %w", err)
	}
	keys, err := s.store.JoinKeys(ctx, sh.Name)
	if err != nil {
		return nil, fmt.Errorf("loading join keys: %w", err)
	}
	keyUser := make(map[uint64]uint64, len(keys))
	var ids []uint64
	for _, k := range keys {
		keyUser[k.KeyID] = k.UserID
	}
	out := make([]NodeView, 0, len(nodes))
	for _, n := range nodes {
		v := NodeView{Shard: sh.Name, Node: n, Room: rooms[n.UserName], UserID: keyUser[n.PreAuthKeyID]}
		if n.PreAuthKeyID == 0 {
			v.UserID = 0
		}
		if v.UserID != 0 && !slices.Contains(ids, v.UserID) {
			ids = append(ids, v.UserID)
		}
		if src, ok := s.sources.get(n.NodeKey); ok {
			v.RelaySource, v.RelaySourceAt = src.addr, src.at
		}
		out = append(out, v)
	}
	names, err := s.store.Usernames(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("naming the nodes' members: %w", err)
	}
	for i := range out {
		out[i].Username = names[out[i].UserID]
	}
	slices.SortFunc(out, func(a, b NodeView) int {
		if c := strings.Compare(a.Room.ID, b.Room.ID); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// reportedEndpoints collects the direct endpoints a room's members
// reported reaching any of ips at.
func (s *Service) reportedEndpoints(roomID string, ips []netip.Addr, now time.Time) []string {
	var out []string
	for _, r := range s.paths.room(roomID, now) {
		for _, l := range r.Links {
			if !l.Direct || l.Addr == "" || l.Inferred {
				continue
			}
			a, err := netip.ParseAddr(l.IP)
			if err != nil || !slices.Contains(ips, a) || slices.Contains(out, l.Addr) {
				continue
			}
			out = append(out, l.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// Node actions an admin takes on one node.
const (
	NodeExpire = "expire" // the node's key expires now: it stops and its peers drop it
	NodeDelete = "delete" // expired now, deleted from Headscale after CutGrace
)

// ActOnNode expires or deletes one node of a shard (admins only) and
// audits it. Its join key is expired first, so that the node cannot
// register again with it; the member keeps their place in the room and
// gets a fresh key by joining again (to remove them, kick them). A
// delete expires the node first and deletes it after CutGrace, as a cut
// does: Headscale tells an expired node it is done, not a deleted one.
// It returns the node as it was.
func (s *Service) ActOnNode(ctx context.Context, actor cp.User, shardName string, id uint64, action string) (NodeView, error) {
	if !actor.IsAdmin() {
		return NodeView{}, cp.ErrForbidden
	}
	if action != NodeExpire && action != NodeDelete {
		return NodeView{}, cp.Invalid("action: expire or delete")
	}
	sh, ok := s.shards[shardName]
	if !ok {
		return NodeView{}, fmt.Errorf("%w: no shard %q", cp.ErrNotFound, shardName)
	}
	v, err := s.findNode(ctx, sh, id)
	if err != nil {
		return NodeView{}, err
	}
	if v.Room.ID != "" {
		defer s.lock(v.Room.ID)()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CutTimeout)
	defer cancel()
	if v.PreAuthKeyID != 0 {
		if err := sh.Client.ExpirePreAuthKey(ctx, v.PreAuthKeyID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			return NodeView{}, unavailable(fmt.Errorf("expiring the node's join key: %w", err))
		}
	}
	if err := sh.Client.ExpireNode(ctx, id); err != nil {
		if errors.Is(err, headscale.ErrNotFound) {
			return NodeView{}, fmt.Errorf("%w: no node %d on shard %s", cp.ErrNotFound, id, shardName)
		}
		return NodeView{}, unavailable(fmt.Errorf("expiring the node: %w", err))
	}
	if v.Room.ID != "" && v.UserID != 0 {
		s.paths.forget(v.Room.ID, v.UserID)
	}
	if action == NodeDelete {
		s.deleteNodeLater(sh, id)
	}
	detail := fmt.Sprintf("node %s (%s)", v.Name, joinAddrs(v.IPs))
	if v.Room.ID != "" {
		detail += fmt.Sprintf(" of room %q (%s)", v.Room.Name, v.Room.ID)
	}
	if v.Username != "" {
		detail += " of " + v.Username
	}
	auditAction := cp.AuditExpireNode
	if action == NodeDelete {
		auditAction = cp.AuditDeleteNode
	}
	s.Audit(ctx, actor, auditAction, fmt.Sprintf("%s/%d", shardName, id), detail)
	return v, nil
}

// findNode looks one node of a shard up with its room and member.
func (s *Service) findNode(ctx context.Context, sh Shard, id uint64) (NodeView, error) {
	nodes, err := s.shardNodes(ctx, sh)
	if err != nil {
		return NodeView{}, unavailable(fmt.Errorf("listing the shard's nodes: %w", err))
	}
	for _, n := range nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return NodeView{}, fmt.Errorf("%w: no node %d on shard %s", cp.ErrNotFound, id, sh.Name)
}

// deleteNodeLater deletes an expired node after CutGrace. If this process
// stops first the node stays expired (it reaches no one) and is listed
// until an admin deletes it again or its room closes.
func (s *Service) deleteNodeLater(sh Shard, id uint64) {
	s.afterGrace(func(ctx context.Context) {
		if err := sh.Client.DeleteNode(ctx, id); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			s.log.Error("deleting an expired node", "shard", sh.Name, "node", id, "err", err)
		}
	})
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, a := range ips {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/types/key"

	cp "github.com/roomnet/roomnet/controlplane"
)

// Rooms over many shards. A health loop (RunShardMonitor) asks every
// shard for its health and its nodes every few seconds; new rooms go to
// the healthy shard with the fewest nodes (those it holds plus the keys
// minted on it since it was counted), ties broken by fewest open rooms,
// and never to a shard at its node cap. Health only steers the choice:
// when no shard under its cap passed its last check, the least loaded of
// them is tried all the same (a check can time out on a busy machine; a
// shard that is really down then answers ErrUnavailable, as a single
// Headscale always did). Joins to existing rooms go to the room's shard
// whatever its load: a room's members stay together.

// Shard kinds.
const (
	ShardEmbedded = "embedded" // a supervised child of this process
	ShardExternal = "external" // a Headscale this process does not run
)

// ShardProcess is what the operating system says of an embedded shard's
// child process.
type ShardProcess struct {
	PID        int
	CPUSeconds float64 // user + system since the child started
	RSSBytes   int64
	Restarts   int64 // after crashes
}

// Admitter answers a DERP relay's admission question for one shard:
// whether it knows a node key (Headscale's POST /verify).
type Admitter interface {
	Admit(ctx context.Context, nodeKey key.NodePublic, source netip.Addr) (bool, error)
}

// shardLoad is what the health loop last saw of one shard.
type shardLoad struct {
	checked   bool // false until the first check: the shard counts as healthy and empty
	healthy   bool
	lastErr   string
	checkedAt time.Time
	nodes     int // registered nodes, online or not
	online    int
	grants    int // keys minted on the shard since its nodes were counted
	// downSince is when the shard failed its first check in a row; lost,
	// that it stayed down past Options.ShardGrace (its rooms move);
	// quarantined, that it answered again after that and takes no new
	// rooms until it has been reconciled.
	downSince   time.Time
	lost        bool
	quarantined bool
	// lostSince is when the shard went down before it was found lost
	// (kept until it is reconciled): Headscale users created after it
	// are not the moved rooms' (shardnotes.go). upSince is when it last
	// became healthy; noteAt when the deciding node last said it is lost.
	lostSince time.Time
	upSince   time.Time
	noteAt    time.Time
}

// shardLoads holds every shard's load; its lock is never held across I/O.
type shardLoads struct {
	mu     sync.Mutex
	byName map[string]*shardLoad
}

// ShardStatus is a shard as admins see it.
type ShardStatus struct {
	Name    string
	Kind    string
	Version string // "" when unknown
	Checked bool   // false until the health loop has seen it once
	Healthy bool
	// Quarantined: back after its loss, not yet reconciled; it takes no
	// new rooms.
	Quarantined bool
	// Lost: down past Options.ShardGrace; its rooms move to other shards.
	// DownSince: when its current run of failed checks began (zero: up).
	Lost      bool
	DownSince time.Time
	LastError string
	CheckedAt time.Time
	Rooms     int // open rooms placed on it
	Nodes     int // registered nodes at the last check
	Online    int
	Grants    int // keys minted since the last check
	NodeCap   int // 0: no cap
	Process   *ShardProcess
}

// noteGrant counts a key minted on a shard until the next count of its
// nodes includes the node it registers.
func (s *Service) noteGrant(shard string) {
	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	if l := s.loads.byName[shard]; l != nil {
		l.grants++
	}
}

// pickShard places a new room: the shard under its node cap with the
// fewest nodes, then the fewest open rooms, then the first name, among
// the healthy ones if any is. ErrCapacity when every shard is at its cap.
func (s *Service) pickShard(ctx context.Context) (Shard, error) {
	counts, err := s.store.CountOpenRooms(ctx)
	if err != nil {
		return Shard{}, fmt.Errorf("counting rooms per shard: %w", err)
	}
	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	best, bestLoad, bestHealthy := "", 0, false
	lostOrQuarantined := 0
	for _, n := range s.names {
		l := s.loads.byName[n]
		healthy := !l.checked || l.healthy
		load := l.nodes + l.grants
		if l.quarantined || l.lost {
			lostOrQuarantined++
			continue
		}
		if s.opts.ShardNodeCap > 0 && load >= s.opts.ShardNodeCap {
			continue
		}
		better := best == "" || (healthy && !bestHealthy) ||
			(healthy == bestHealthy && (load < bestLoad || (load == bestLoad && counts[n] < counts[best])))
		if better {
			best, bestLoad, bestHealthy = n, load, healthy
		}
	}
	if best == "" && lostOrQuarantined == len(s.names) {
		return Shard{}, fmt.Errorf("%w: every Headscale shard is lost or being reconciled", cp.ErrUnavailable)
	}
	if best == "" {
		return Shard{}, fmt.Errorf("%w: every Headscale shard is at its node cap", cp.ErrCapacity)
	}
	return s.shards[best], nil
}

// RefreshShards checks every shard once, in parallel: its health, then
// its nodes.
func (s *Service) RefreshShards(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range s.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.checkShard(ctx, s.shards[n])
		}()
	}
	wg.Wait()
}

// RunShardMonitor checks every shard every interval (default 5s) until
// ctx ends.
func (s *Service) RunShardMonitor(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	s.roundEvery.Store(int64(interval))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.shardRound(ctx)
		}
	}
}

// shardRound is one round of the health loop: every shard checked, the
// shards back from a loss reconciled, the rooms of lost shards moved.
func (s *Service) shardRound(ctx context.Context) {
	s.RefreshShards(ctx)
	s.reconcileReturned(ctx)
	s.moveRooms(ctx)
}

func (s *Service) checkShard(ctx context.Context, sh Shard) {
	s.loads.mu.Lock()
	before := s.loads.byName[sh.Name].grants
	s.loads.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, s.opts.ShardCheckTimeout)
	err := sh.Client.Health(ctx)
	nodes, online := 0, 0
	if err == nil {
		ns, lerr := sh.Client.ListNodes(ctx, "")
		err = lerr
		nodes = len(ns)
		for _, n := range ns {
			if n.Online {
				online++
			}
		}
	}
	cancel()

	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	l := s.loads.byName[sh.Name]
	was := !l.checked || l.healthy
	l.checked, l.checkedAt = true, s.now()
	if err != nil {
		l.healthy, l.lastErr = false, err.Error()
		if was {
			l.downSince = l.checkedAt
		}
		if was {
			s.log.Warn("headscale shard unhealthy: it takes no new rooms", "shard", sh.Name, "err", err)
		}
		return
	}
	if !was {
		s.log.Info("headscale shard healthy again", "shard", sh.Name)
	}
	if !was || l.upSince.IsZero() {
		l.upSince = l.checkedAt
	}
	l.downSince = time.Time{}
	if l.lost {
		l.lost, l.quarantined = false, true
		s.log.Warn("headscale shard back after its loss: quarantined until it is reconciled", "shard", sh.Name)
	}
	l.healthy, l.lastErr = true, ""
	l.nodes, l.online = nodes, online
	l.grants = max(l.grants-before, 0) // the count includes what was minted before it
}

// AdmitNode answers a DERP relay: whether any shard knows nodeKey. It asks
// every shard that passed its last check (every shard when none did), in
// parallel, and admits as soon as one knows the key. It fails
// (ErrUnavailable) when no shard answers, and relays then refuse the
// node: admission fails closed.
//
// A key that no shard knew is refused from memory for a second
// (admitcache.go): unknown keys cost the shards one question a second
// each, not one per request.
func (s *Service) AdmitNode(ctx context.Context, nodeKey key.NodePublic, source netip.Addr) (bool, error) {
	if s.admits.refused(nodeKey, s.now()) {
		return false, nil
	}
	known, everyShard, err := s.admitNode(ctx, nodeKey, source)
	if err == nil && !known && everyShard {
		s.admits.refuse(nodeKey, s.now())
	}
	return known, err
}

// admitNode asks the shards; everyShard reports that every shard was
// asked and answered (only then is a refusal worth remembering).
func (s *Service) admitNode(ctx context.Context, nodeKey key.NodePublic, source netip.Addr) (known, everyShard bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ShardCheckTimeout)
	defer cancel()
	type answer struct {
		known bool
		err   error
	}
	answers := make(chan answer, len(s.names))
	var ask []Shard
	s.loads.mu.Lock()
	withAdmitter := 0
	for _, n := range s.names {
		if s.shards[n].Admitter != nil {
			withAdmitter++
		}
		if l := s.loads.byName[n]; s.shards[n].Admitter != nil && (!l.checked || l.healthy) && !l.quarantined {
			ask = append(ask, s.shards[n])
		}
	}
	if len(ask) == 0 {
		for _, n := range s.names {
			if s.shards[n].Admitter != nil {
				ask = append(ask, s.shards[n])
			}
		}
	}
	s.loads.mu.Unlock()
	asked := len(ask)
	for _, sh := range ask {
		go func() {
			known, err := sh.Admitter.Admit(ctx, nodeKey, source)
			if err != nil {
				err = fmt.Errorf("shard %s: %w", sh.Name, err)
			}
			answers <- answer{known, err}
		}()
	}
	var errs []error
	for range asked {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		if a.known {
			s.noteAdmitted(nodeKey, source)
			return true, false, nil
		}
	}
	if asked == 0 || len(errs) == asked {
		return false, false, fmt.Errorf("%w: no Headscale shard answered the admission check: %w", cp.ErrUnavailable, errors.Join(errs...))
	}
	return false, asked == withAdmitter && len(errs) == 0, nil
}

// Shards lists every shard with its health and load (admins only).
func (s *Service) Shards(ctx context.Context, actor cp.User) ([]ShardStatus, error) {
	if !actor.IsAdmin() {
		return nil, cp.ErrForbidden
	}
	counts, err := s.store.CountOpenRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("counting rooms per shard: %w", err)
	}
	out := s.ShardLoads()
	for i := range out {
		out[i].Rooms = counts[out[i].Name]
		if p := s.shards[out[i].Name].Process; p != nil {
			if proc, ok := p(); ok {
				out[i].Process = &proc
			}
		}
	}
	return out, nil
}

// ShardLoads is what the health loop last saw of every shard, without
// room counts or process figures; it does no I/O (metrics).
func (s *Service) ShardLoads() []ShardStatus {
	s.loads.mu.Lock()
	defer s.loads.mu.Unlock()
	out := make([]ShardStatus, 0, len(s.names))
	for _, n := range s.names {
		sh, l := s.shards[n], s.loads.byName[n]
		out = append(out, ShardStatus{
			Name: n, Kind: sh.Kind, Version: sh.Version,
			Checked: l.checked, Healthy: !l.checked || l.healthy, Quarantined: l.quarantined, LastError: l.lastErr, CheckedAt: l.checkedAt,
			Lost: l.lost, DownSince: l.downSince,
			Nodes: l.nodes, Online: l.online, Grants: l.grants, NodeCap: s.opts.ShardNodeCap,
		})
	}
	return out
}

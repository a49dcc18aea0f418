package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tailscale.com/types/logger"

	"github.com/roomnet/roomnet/bench/internal/measure"
	"github.com/roomnet/roomnet/roomnet"
)

// Config is one simulation.
type Config struct {
	API         string        // roomnetd's base URL
	Nodes       int           // nodes in all, hosts included
	RoomSize    int           // members per room
	Concurrency int           // joins (or kicks) in flight at once
	Hold        time.Duration // idle phase: every node connected, nothing changes
	ChurnRate   float64       // leave-and-rejoin operations per second in the churn phase
	ChurnFor    time.Duration // length of the churn phase (0: none)
	Kicks       int           // kicks in the kick phase, each in its own room
	Timeout     time.Duration // longest wait for one join or kick to show
	Prefix      string        // account names start with it (reruns reuse accounts)
	Password    string        // every simulated account's password
	PIDs        []int         // Headscale processes to measure (0 none: found by environment)
	ControlLogf logger.Logf   // the control clients' log (nil: discarded)
	Progress    func(format string, args ...any)
}

// Phase is what one phase measured.
type Phase struct {
	Name     string  `json:"name"`
	Ops      int64   `json:"ops"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	P50      string  `json:"p50,omitempty"`       // join: the joiner's map holds every roommate
	P99      string  `json:"p99,omitempty"`       //
	SeenP50  string  `json:"seen_p50,omitempty"`  // join: every roommate's map holds the joiner
	SeenP99  string  `json:"seen_p99,omitempty"`  //
	GoneP50  string  `json:"gone_p50,omitempty"`  // leave or kick: no roommate's map holds the node
	GoneP99  string  `json:"gone_p99,omitempty"`  //
	CPUCores float64 `json:"headscale_cores"`     // Headscale CPU over the phase, in cores
	RSSMB    float64 `json:"headscale_rss_mb"`    // at the phase's end
	FirstErr string  `json:"first_err,omitempty"` //
}

// Report is a whole simulation.
type Report struct {
	Nodes     int     `json:"nodes"`
	Rooms     int     `json:"rooms"`
	RoomSize  int     `json:"room_size"`
	PIDs      []int   `json:"headscale_pids"`
	Phases    []Phase `json:"phases"`
	PeakRSSMB float64 `json:"headscale_peak_rss_mb"`
}

type player struct {
	name string
	api  *roomnet.Client
	node *simNode
	gen  int // bumped on each rejoin, so that a node's name is unique
}

func (p *player) nodeName() string { return p.name + "-" + strconv.Itoa(p.gen) }

type simRoom struct {
	mu      sync.Mutex
	id      string
	invite  string // rooms are private: members join by invite code
	host    *player
	in      []*player // members with a node, host first
	waiting []*player // this room's players not in it yet
}

func (r *simRoom) names(except *player) []string {
	var out []string
	for _, p := range r.in {
		if p != except {
			out = append(out, p.nodeName())
		}
	}
	return out
}

type sim struct {
	cfg   Config
	admin *roomnet.Client
	rooms []*simRoom
	procs []measure.Proc
	rep   Report
}

// Run performs the simulation: accounts, rooms filled member by member
// (join), an idle hold, churn, kicks; it closes every node at the end.
func Run(ctx context.Context, cfg Config) (Report, error) {
	s, err := newSim(cfg)
	if err != nil {
		return Report{}, err
	}
	defer s.closeAll()
	cfg = s.cfg
	if err := s.accounts(ctx, s.rep.Rooms); err != nil {
		return s.rep, err
	}
	if err := s.fill(ctx); err != nil {
		return s.rep, err
	}
	if cfg.Hold > 0 {
		s.phase("idle", func(ph *phaseRun) {
			select {
			case <-ctx.Done():
			case <-time.After(cfg.Hold):
			}
		})
	}
	if cfg.ChurnFor > 0 && cfg.ChurnRate > 0 {
		s.churn(ctx)
	}
	if cfg.Kicks > 0 {
		s.kicks(ctx)
	}
	s.rep.PeakRSSMB = s.mem("VmHWM")
	return s.rep, ctx.Err()
}

func newSim(cfg Config) (*sim, error) {
	if cfg.RoomSize < 2 || cfg.Nodes < cfg.RoomSize {
		return nil, fmt.Errorf("want a room size of at least 2 and at least one room's worth of nodes")
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, ...any) {}
	}
	s := &sim{cfg: cfg, admin: roomnet.NewClient(cfg.API)}
	pids := cfg.PIDs
	if len(pids) == 0 {
		pids = findHeadscale()
	}
	for _, p := range pids {
		s.procs = append(s.procs, measure.Proc(p))
	}
	rooms := cfg.Nodes / cfg.RoomSize
	s.rep = Report{Nodes: rooms * cfg.RoomSize, Rooms: rooms, RoomSize: cfg.RoomSize, PIDs: pids}
	return s, nil
}

// accounts registers (or logs in, on a rerun) every player.
func (s *sim) accounts(ctx context.Context, rooms int) error {
	s.rooms = make([]*simRoom, rooms)
	var all []*player
	for r := range rooms {
		room := &simRoom{}
		for m := range s.cfg.RoomSize {
			p := &player{name: fmt.Sprintf("%s%dm%d", s.cfg.Prefix, r, m)}
			room.waiting = append(room.waiting, p)
			all = append(all, p)
		}
		room.host = room.waiting[0]
		s.rooms[r] = room
	}
	var firstErr atomic.Value
	var done atomic.Int64
	stop := s.ticker("accounts", func() string { return fmt.Sprintf("%d/%d", done.Load(), len(all)) })
	defer stop()
	parallel(ctx, s.cfg.Concurrency, len(all), func(i int) {
		p := all[i]
		_, err := s.admin.Register(ctx, p.name, s.cfg.Password)
		var apiErr *roomnet.Error
		if err != nil && !(errors.As(err, &apiErr) && apiErr.Code == "username_taken") {
			firstErr.CompareAndSwap(nil, fmt.Errorf("registering %s: %w", p.name, err))
			return
		}
		c, _, err := s.admin.Login(ctx, p.name, s.cfg.Password)
		if err != nil {
			firstErr.CompareAndSwap(nil, fmt.Errorf("logging in %s: %w", p.name, err))
			return
		}
		p.api = c
		done.Add(1)
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

// fill creates every room and then adds members in waves: the k-th
// member of every room joins in wave k, so each join has a known room to
// converge to.
func (s *sim) fill(ctx context.Context) error {
	var failed atomic.Bool
	s.phase("join", func(ph *phaseRun) {
		for wave := range s.cfg.RoomSize {
			parallel(ctx, s.cfg.Concurrency, len(s.rooms), func(i int) {
				room := s.rooms[i]
				room.mu.Lock()
				defer room.mu.Unlock()
				if wave == 0 && room.id == "" {
					if err := s.create(ctx, room, ph); err != nil {
						ph.fail(err)
						failed.Store(true)
					}
					return
				}
				if room.id == "" || len(room.waiting) == 0 {
					return
				}
				s.join(ctx, room, room.waiting[0], ph)
			})
		}
	})
	if failed.Load() {
		return errors.New("creating rooms failed: " + s.rep.Phases[len(s.rep.Phases)-1].FirstErr)
	}
	return nil
}

func (s *sim) create(ctx context.Context, room *simRoom, ph *phaseRun) error {
	h := room.host
	start := time.Now()
	r, err := h.api.CreateRoom(ctx, roomnet.CreateRoom{Name: "load " + h.name, Game: "nodeload", MaxPlayers: s.cfg.RoomSize, Public: false})
	if err != nil {
		return fmt.Errorf("creating a room: %w", err)
	}
	room.id, room.invite = r.ID, r.InviteCode
	n, err := startNode(ctx, r.Join, h.nodeName(), s.cfg.ControlLogf)
	if err != nil {
		return err
	}
	h.node = n
	room.in = append(room.in, h)
	room.waiting = room.waiting[1:]
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := n.waitPeers(wctx, func(map[string]bool) bool { return n.maps > 0 }); err != nil {
		return err
	}
	ph.join.Add(time.Since(start))
	ph.ops.Add(1)
	return nil
}

// join adds p to room (whose lock the caller holds) and measures how long
// until p's map holds the room and until every member's map holds p.
func (s *sim) join(ctx context.Context, room *simRoom, p *player, ph *phaseRun) {
	start := time.Now()
	g, err := p.api.JoinInvite(ctx, room.invite)
	if err != nil {
		ph.fail(fmt.Errorf("joining: %w", err))
		return
	}
	n, err := startNode(ctx, g, p.nodeName(), s.cfg.ControlLogf)
	if err != nil {
		ph.fail(err)
		_ = p.api.Leave(ctx, room.id)
		return
	}
	p.node = n
	want := room.names(nil)
	room.in = append(room.in, p)
	room.waiting = room.waiting[1:]
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := n.waitPeers(wctx, func(peers map[string]bool) bool { return hasAll(peers, want) }); err != nil {
		ph.fail(err)
		return
	}
	ph.join.Add(time.Since(start))
	for _, m := range room.in {
		if m == p {
			continue
		}
		if err := m.node.waitPeers(wctx, func(peers map[string]bool) bool { return peers[p.nodeName()] }); err != nil {
			ph.fail(err)
			return
		}
	}
	ph.seen.Add(time.Since(start))
	ph.ops.Add(1)
}

// remove takes p out of room (whose lock the caller holds) by leave or
// kick and measures until no other member's map holds p's node.
func (s *sim) remove(ctx context.Context, room *simRoom, p *player, kick bool, ph *phaseRun) bool {
	start := time.Now()
	var err error
	if kick {
		err = room.host.api.Kick(ctx, room.id, p.name)
	} else {
		err = p.api.Leave(ctx, room.id)
	}
	if err != nil {
		ph.fail(fmt.Errorf("removing %s: %w", p.name, err))
		return false
	}
	gone := p.nodeName()
	for i, m := range room.in {
		if m == p {
			room.in = append(room.in[:i:i], room.in[i+1:]...)
			break
		}
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ok := true
	for _, m := range room.in {
		if err := m.node.waitPeers(wctx, func(peers map[string]bool) bool { return !peers[gone] }); err != nil {
			ph.fail(err)
			ok = false
			break
		}
	}
	if ok {
		ph.gone.Add(time.Since(start))
	}
	p.node.Close()
	p.node = nil
	return ok
}

// churn makes random members leave and join again at the configured rate.
func (s *sim) churn(ctx context.Context) {
	s.phase("churn", func(ph *phaseRun) {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.ChurnFor)
		defer cancel()
		tick := time.NewTicker(time.Duration(float64(time.Second) / s.cfg.ChurnRate))
		defer tick.Stop()
		sem := make(chan struct{}, s.cfg.Concurrency)
		var wg sync.WaitGroup
		for {
			select {
			case <-cctx.Done():
				wg.Wait()
				return
			case <-tick.C:
			}
			room := s.rooms[rand.IntN(len(s.rooms))]
			select {
			case sem <- struct{}{}:
			default:
				ph.skipped.Add(1) // the server is behind the offered rate
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if !room.mu.TryLock() {
					ph.skipped.Add(1)
					return
				}
				defer room.mu.Unlock()
				if len(room.in) < 2 {
					return
				}
				p := room.in[1+rand.IntN(len(room.in)-1)]
				if !s.remove(ctx, room, p, false, ph) {
					return
				}
				p.gen++
				room.waiting = append([]*player{p}, room.waiting...)
				s.join(ctx, room, p, ph)
			}()
		}
	})
}

// kicks has each of the first Kicks rooms' hosts kick its last member.
func (s *sim) kicks(ctx context.Context) {
	n := min(s.cfg.Kicks, len(s.rooms))
	s.phase("kick", func(ph *phaseRun) {
		parallel(ctx, s.cfg.Concurrency, n, func(i int) {
			room := s.rooms[i]
			room.mu.Lock()
			defer room.mu.Unlock()
			if len(room.in) < 2 {
				return
			}
			if s.remove(ctx, room, room.in[len(room.in)-1], true, ph) {
				ph.ops.Add(1)
			}
		})
	})
}

func (s *sim) closeAll() {
	var wg sync.WaitGroup
	for _, r := range s.rooms {
		for _, p := range r.in {
			if p.node != nil {
				wg.Add(1)
				go func(n *simNode) { defer wg.Done(); n.Close() }(p.node)
			}
		}
	}
	wg.Wait()
}

// phaseRun collects one phase's samples.
type phaseRun struct {
	join, seen   measure.Hist
	gone         measure.Hist
	ops, errs    atomic.Int64
	skipped      atomic.Int64
	firstErrOnce sync.Once
	firstErr     string
}

func (ph *phaseRun) fail(err error) {
	ph.errs.Add(1)
	ph.firstErrOnce.Do(func() { ph.firstErr = err.Error() })
}

// phase runs f as a named phase and records its figures.
func (s *sim) phase(name string, f func(*phaseRun)) {
	ph := &phaseRun{}
	cpu0 := s.cpu()
	start := time.Now()
	stop := s.ticker(name, func() string {
		return fmt.Sprintf("%d done, %d errors, join p50 %v, gone p50 %v", ph.ops.Load(), ph.errs.Load(), ph.join.Quantile(0.5), ph.gone.Quantile(0.5))
	})
	f(ph)
	stop()
	wall := time.Since(start)
	p := Phase{
		Name: name, Ops: ph.ops.Load(), Errors: ph.errs.Load(), Seconds: wall.Seconds(),
		CPUCores: (s.cpu() - cpu0).Seconds() / wall.Seconds(), RSSMB: s.mem("VmRSS"), FirstErr: ph.firstErr,
	}
	if ph.join.Count() > 0 {
		p.P50, p.P99 = ph.join.Quantile(0.5).String(), ph.join.Quantile(0.99).String()
	}
	if ph.seen.Count() > 0 {
		p.SeenP50, p.SeenP99 = ph.seen.Quantile(0.5).String(), ph.seen.Quantile(0.99).String()
	}
	if ph.gone.Count() > 0 {
		p.GoneP50, p.GoneP99 = ph.gone.Quantile(0.5).String(), ph.gone.Quantile(0.99).String()
	}
	if n := ph.skipped.Load(); n > 0 {
		s.cfg.Progress("%s: %d operations skipped (room busy or all workers busy)", name, n)
	}
	s.rep.Phases = append(s.rep.Phases, p)
}

// ticker prints progress every 5 s until stopped.
func (s *sim) ticker(name string, line func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s.cfg.Progress("%s: %s", name, line())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (s *sim) cpu() time.Duration {
	var sum time.Duration
	for _, p := range s.procs {
		if d, err := p.CPU(); err == nil {
			sum += d
		}
	}
	return sum
}

func (s *sim) mem(field string) float64 {
	var sum int64
	for _, p := range s.procs {
		if b, err := p.Mem(field); err == nil {
			sum += b
		}
	}
	return float64(sum) / (1 << 20)
}

// parallel runs f(0..n-1) with at most c at once.
func parallel(ctx context.Context, c, n int, f func(i int)) {
	sem := make(chan struct{}, c)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// findHeadscale returns the processes running as roomnetd's embedded
// Headscale (ROOMNET_CHILD=headscale in their environment).
func findHeadscale() []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "ROOMNET_CHILD=headscale" {
				if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}

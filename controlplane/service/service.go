// Package service is the control plane's one coordinator: accounts, rooms,
// members and invites, and the mapping of rooms onto Headscale shards.
// Handlers call it; it calls the store and the Headscale clients.
// Mutations return the events they caused and, when a Publisher is set,
// publish them while they still hold the room's lock, so that the events
// of one room reach chat and the panel in the order they happened.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
	"github.com/roomnet/roomnet/controlplane/store"
)

// Headscale is what the service needs of a coordination server.
type Headscale interface {
	Health(ctx context.Context) error
	CreateUser(ctx context.Context, name string) (headscale.User, error)
	ListUsers(ctx context.Context) ([]headscale.User, error)
	DeleteUser(ctx context.Context, id uint64) error
	CreatePreAuthKey(ctx context.Context, userID uint64, ephemeral bool, ttl time.Duration) (headscale.PreAuthKey, error)
	ListPreAuthKeys(ctx context.Context) ([]headscale.PreAuthKey, error)
	ExpirePreAuthKey(ctx context.Context, id uint64) error
	DeletePreAuthKey(ctx context.Context, id uint64) error
	ListNodes(ctx context.Context, user string) ([]headscale.Node, error)
	ExpireNode(ctx context.Context, id uint64) error
	DeleteNode(ctx context.Context, id uint64) error
	GetPolicy(ctx context.Context) (string, error)
	SetPolicy(ctx context.Context, policy string) error
}

var _ Headscale = (*headscale.Client)(nil)

// Shard is one Headscale server that rooms can live on.
type Shard struct {
	Name        string // stable: stored with every room placed on it
	Client      Headscale
	LoginServer string // URL nodes register with
	// Kind is ShardEmbedded or ShardExternal; Version is Headscale's
	// version when known. Both are for admins.
	Kind, Version string
	// Admitter answers DERP admission for this shard; nil: relays
	// cannot ask it (AdmitNode never admits its nodes).
	Admitter Admitter
	// Process reports an embedded shard's child process; nil: external.
	Process func() (ShardProcess, bool)
}

// Options configures the service.
type Options struct {
	Shards          []Shard
	JoinKeyTTL      time.Duration
	MaxPlayers      int
	MaxRoomsPerUser int
	TokenTTL        time.Duration
	OpenSignup      bool
	// NoPeerRelays keeps the relay grant out of the isolation policy:
	// members never relay for each other (rooms.peer_relays off).
	NoPeerRelays bool
	// ReconcileGrace spares Headscale users and keys younger than this
	// from reconciliation (default 2m): a room's Headscale user exists a
	// moment before its database row, a key a moment before its record.
	ReconcileGrace time.Duration
	// CutGrace is how long a cut-off node stays expired before it is
	// deleted (default 2s). Headscale does not tell a deleted node that it
	// is gone, but it does tell an expired one, which then stops; deleting
	// right away would race that news.
	CutGrace time.Duration
	// CutTimeout bounds one attempt at cutting nodes off (default 5s); a
	// cut that fails is retried every CutRetry (default 250ms) as soon as
	// the shard answers its health check.
	CutTimeout time.Duration
	CutRetry   time.Duration
	// ShardNodeCap is how many nodes a shard holds before it takes no new
	// rooms (0: no cap). ShardCheckTimeout bounds one shard's health
	// check and one admission check (default 3s).
	ShardNodeCap      int
	ShardCheckTimeout time.Duration
	// ShardGrace is how long a shard stays unhealthy before its open
	// rooms move to healthy shards (default 30s; negative: never).
	ShardGrace time.Duration
	// Lease is what RunReconciler reconciles under, so that one node of a
	// deployment reconciles at a time; nil: always this node (one box).
	Lease  Lease
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}

// Lease is an exclusive right that at most one node holds at a time
// (package lease: a PostgreSQL advisory lock, or always held).
type Lease interface {
	// TryAcquire takes the lease if it is free and reports whether this
	// node holds it now, without waiting.
	TryAcquire(ctx context.Context) (held bool, err error)
	// Release gives it up for another node to take at once.
	Release(ctx context.Context) error
}

// Publisher receives the events of mutations.
type Publisher interface {
	Publish(ctx context.Context, events ...cp.Event)
}

// Service implements the control plane's rules.
type Service struct {
	store    *store.Store
	shards   map[string]Shard
	names    []string
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	locks    [64]sync.Mutex
	paths    paths
	relayObs atomic.Pointer[relayObserver]
	pub      atomic.Pointer[Publisher]
	mod      atomic.Pointer[Moderator]
	cuts     cuts
	loads    shardLoads
	sources  relaySources
	moved    atomic.Uint64 // rooms moved off lost shards
	notes    atomic.Pointer[ShardNotifier]
	admits   admitCache // keys no shard knew a moment ago
	// roundEvery is the health loop's interval (RunShardMonitor), in ns
	roundEvery atomic.Int64

	// hookPasswordChecked, when set (tests), runs after a join's room
	// password was checked and before the join takes the room's lock.
	hookPasswordChecked func()

	closing   chan struct{}
	closeOnce sync.Once
	pending   sync.WaitGroup // delayed deletions and the cut retrier
}

// RoomUserPrefix starts the name of every Headscale user that is a room.
// Reconciliation only ever touches users with this prefix.
const RoomUserPrefix = "room-"

// New returns a Service.
func New(st *store.Store, o Options) (*Service, error) {
	if len(o.Shards) == 0 {
		return nil, errors.New("service: at least one Headscale shard is required")
	}
	s := &Service{store: st, shards: map[string]Shard{}, opts: o, log: o.Logger, now: o.Now, closing: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	if s.opts.ReconcileGrace == 0 {
		s.opts.ReconcileGrace = 2 * time.Minute
	}
	if s.opts.CutGrace == 0 {
		s.opts.CutGrace = 2 * time.Second
	}
	if s.opts.CutTimeout == 0 {
		s.opts.CutTimeout = 5 * time.Second
	}
	if s.opts.CutRetry == 0 {
		s.opts.CutRetry = 250 * time.Millisecond
	}
	if s.opts.ShardGrace == 0 {
		s.opts.ShardGrace = 30 * time.Second
	}
	if s.opts.ShardCheckTimeout == 0 {
		s.opts.ShardCheckTimeout = 3 * time.Second
	}
	s.loads.byName = map[string]*shardLoad{}
	for _, sh := range o.Shards {
		if _, dup := s.shards[sh.Name]; dup {
			return nil, fmt.Errorf("service: duplicate shard %q", sh.Name)
		}
		s.shards[sh.Name] = sh
		s.names = append(s.names, sh.Name)
		s.loads.byName[sh.Name] = &shardLoad{}
	}
	sort.Strings(s.names)
	return s, nil
}

// SetPublisher makes the service publish the events of its mutations to p
// (chat, the admin panel). Set it before serving; callers then must not
// publish the returned events again.
func (s *Service) SetPublisher(p Publisher) { s.pub.Store(&p) }

// publish hands events to the publisher; callers hold the room's lock.
func (s *Service) publish(ctx context.Context, events []cp.Event) {
	if p := s.pub.Load(); p != nil && len(events) > 0 {
		(*p).Publish(context.WithoutCancel(ctx), events...)
	}
}

// Close finishes pending node deletions at once and waits for them; cuts
// still waiting for Headscale are left to the next start's reconciliation.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.pending.Wait()
}

// lock serializes mutations of one room within this process; the
// database transaction serializes them across processes.
func (s *Service) lock(roomID string) func() {
	m := s.lockOf(roomID)
	m.Lock()
	return m.Unlock
}

func (s *Service) lockOf(roomID string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(roomID))
	return &s.locks[h.Sum32()%uint32(len(s.locks))]
}

func (s *Service) shard(name string) (Shard, error) {
	sh, ok := s.shards[name]
	if !ok {
		return Shard{}, fmt.Errorf("room on unknown shard %q: %w", name, cp.ErrUnavailable)
	}
	return sh, nil
}

// Health reports the first unhealthy shard or database.
func (s *Service) Health(ctx context.Context) error {
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	for _, n := range s.names {
		if err := s.shards[n].Client.Health(ctx); err != nil {
			return fmt.Errorf("headscale shard %s: %w", n, err)
		}
	}
	return nil
}

const (
	idAlphabet     = "abcdefghijkmnpqrstuvwxyz23456789"
	inviteAlphabet = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
)

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// NewRoomID returns a fresh room id.
func NewRoomID() string { return randomString(idAlphabet, 10) }

// NewInviteCode returns a fresh invite code (8 characters, ~39 bits).
func NewInviteCode() string { return randomString(inviteAlphabet, 8) }

// Package service is the control plane's one coordinator: accounts, rooms,
// members and invites, and the mapping of rooms onto Headscale shards.
// Handlers call it; it calls the store and the Headscale clients.
// Mutations return the events they caused; the caller publishes them.
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
	Name        string
	Client      Headscale
	LoginServer string // URL nodes register with
}

// Options configures the service.
type Options struct {
	Shards          []Shard
	JoinKeyTTL      time.Duration
	MaxPlayers      int
	MaxRoomsPerUser int
	TokenTTL        time.Duration
	OpenSignup      bool
	// ReconcileGrace spares Headscale users and keys younger than this
	// from reconciliation (default 2m): a room's Headscale user exists a
	// moment before its database row, a key a moment before its record.
	ReconcileGrace time.Duration
	// CutGrace is how long a cut-off node stays expired before it is
	// deleted (default 2s). Headscale does not tell a deleted node that it
	// is gone, but it does tell an expired one, which then stops; deleting
	// right away would race that news.
	CutGrace time.Duration
	Logger   *slog.Logger
	Now      func() time.Time // default time.Now
}

// Service implements the control plane's rules.
type Service struct {
	store  *store.Store
	shards map[string]Shard
	names  []string
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	locks  [64]sync.Mutex
	paths  paths

	closing   chan struct{}
	closeOnce sync.Once
	pending   sync.WaitGroup // delayed deletions
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
	for _, sh := range o.Shards {
		if _, dup := s.shards[sh.Name]; dup {
			return nil, fmt.Errorf("service: duplicate shard %q", sh.Name)
		}
		s.shards[sh.Name] = sh
		s.names = append(s.names, sh.Name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Close finishes pending node deletions at once and waits for them.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.pending.Wait()
}

// lock serializes mutations of one room within this process; the
// database transaction serializes them across processes.
func (s *Service) lock(roomID string) func() {
	h := fnv.New32a()
	h.Write([]byte(roomID))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

func (s *Service) shard(name string) (Shard, error) {
	sh, ok := s.shards[name]
	if !ok {
		return Shard{}, fmt.Errorf("room on unknown shard %q: %w", name, cp.ErrUnavailable)
	}
	return sh, nil
}

// pickShard places a new room on the shard with the fewest open rooms.
func (s *Service) pickShard(ctx context.Context) (Shard, error) {
	counts, err := s.store.CountOpenRooms(ctx)
	if err != nil {
		return Shard{}, fmt.Errorf("counting rooms per shard: %w", err)
	}
	best := s.names[0]
	for _, n := range s.names[1:] {
		if counts[n] < counts[best] {
			best = n
		}
	}
	return s.shards[best], nil
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

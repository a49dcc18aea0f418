// Package lease gives one node of a deployment at a time an exclusive
// right to do something (run the reconciler). Local is the single box's:
// always held. Postgres is a session-level advisory lock held on a
// connection of its own for the lease's whole life: the lock is PostgreSQL's
// to keep, so a node that dies, or whose connection dies, loses it at once
// and another node's next attempt takes it. No clocks, no TTLs, no Redis.
//
// A holder learns that it lost the lease at its next TryAcquire; between
// the loss and that check another node may already hold it. Work done
// under a lease must therefore tolerate, rarely, a second node finishing
// one pass of the same work.
package lease

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Lease is an exclusive right held by at most one node at a time.
type Lease interface {
	// TryAcquire reports whether this node holds the lease now: it takes
	// a free lease, and checks that a lease it held is still its own.
	// It does not wait for a lease another node holds.
	TryAcquire(ctx context.Context) (held bool, err error)
	// Release gives the lease up, so that another node may take it at
	// once, and frees what holding it kept.
	Release(ctx context.Context) error
	// Held reports what the last TryAcquire or Release found.
	Held() bool
}

var (
	_ Lease = Local{}
	_ Lease = (*Postgres)(nil)
)

// Local is always held: the single box, or SQLite, where no other node
// can share the database.
type Local struct{}

// TryAcquire implements Lease.
func (Local) TryAcquire(context.Context) (bool, error) { return true, nil }

// Release implements Lease.
func (Local) Release(context.Context) error { return nil }

// Held implements Lease.
func (Local) Held() bool { return true }

// Keepalive settings of the lease's session: PostgreSQL notices a holder
// that vanished without closing its connection (a machine gone, a network
// cut) within about idle + interval × count, and drops its lock.
const (
	keepaliveIdle     = 10 // seconds
	keepaliveInterval = 5
	keepaliveCount    = 3
)

// Postgres is a lease over a PostgreSQL advisory lock. It takes one
// connection of db for as long as it holds the lease.
type Postgres struct {
	db   *sql.DB
	name string
	key  int64
	log  *slog.Logger

	mu   sync.Mutex
	conn *sql.Conn // nil: not held
	held atomic.Bool
}

// NewPostgres returns the lease name on db. Every node must use the same
// name for the same right.
func NewPostgres(db *sql.DB, name string, log *slog.Logger) *Postgres {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Postgres{db: db, name: name, key: Key(name), log: log}
}

// Key is the advisory lock key of the lease name: in pg_locks, classid is
// its high and objid its low 32 bits.
func Key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("roomnet lease " + name))
	return int64(h.Sum64())
}

// TryAcquire implements Lease.
func (p *Postgres) TryAcquire(ctx context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		err := p.alive(ctx)
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return true, err // the caller gave up; nothing was learnt
		}
		p.drop()
		p.log.Warn("lease lost: its database connection failed", "lease", p.name, "err", err)
		// Try again at once on a fresh connection: if the lock went with
		// the old session and nobody took it, this node keeps the work.
	}
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("lease %s: connecting: %w", p.name, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", p.key).Scan(&ok); err != nil {
		discard(conn)
		return false, fmt.Errorf("lease %s: locking: %w", p.name, err)
	}
	if !ok {
		_ = conn.Close()
		return false, nil
	}
	// Server-side keepalives: a vanished holder must not keep the lock
	// for the kernel's default two hours. Ignored on Unix sockets.
	if _, err := conn.ExecContext(ctx, "SELECT set_config('tcp_keepalives_idle', $1, false), set_config('tcp_keepalives_interval', $2, false), set_config('tcp_keepalives_count', $3, false)",
		fmt.Sprint(keepaliveIdle), fmt.Sprint(keepaliveInterval), fmt.Sprint(keepaliveCount)); err != nil {
		discard(conn) // closing the session releases the lock
		return false, fmt.Errorf("lease %s: setting keepalives: %w", p.name, err)
	}
	p.conn = conn
	p.held.Store(true)
	p.log.Debug("lease acquired", "lease", p.name)
	return true, nil
}

// alive checks the lease's session with a short round trip: while the
// session lives, so does its lock.
func (p *Postgres) alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	return p.conn.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Release implements Lease. The connection is closed rather than returned
// to the pool, so the lock goes with the session even if the unlock fails.
func (p *Postgres) Release(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	_, err := p.conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", p.key)
	p.drop()
	p.log.Debug("lease released", "lease", p.name)
	if err != nil {
		return fmt.Errorf("lease %s: unlocking: %w (the connection was closed, which frees it)", p.name, err)
	}
	return nil
}

// Held implements Lease.
func (p *Postgres) Held() bool { return p.held.Load() }

func (p *Postgres) drop() {
	discard(p.conn)
	p.conn = nil
	p.held.Store(false)
}

// discard closes conn's session instead of returning it to the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

package service

import (
	"context"
	"database/sql"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/controlplane/lease"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// node is one roomnetd's service on a shared database, with the reconciler
// running under its lease.
type node struct {
	f      *fixture
	lease  *lease.Postgres
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *node) calls() int {
	n.f.hs.mu.Lock()
	defer n.f.hs.mu.Unlock()
	return n.f.hs.calls
}

// stop ends the node's reconciler the way a shutdown does.
func (n *node) stop() {
	n.cancel()
	<-n.done
}

func startNode(t *testing.T, dsn, leaseDSN string, interval time.Duration) *node {
	t.Helper()
	db, err := sql.Open("pgx", leaseDSN)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	l := lease.NewPostgres(db, "reconciler", nil)
	f := newFixture(t, dbtest.Engine{Name: "postgres", Driver: "postgres", DSN: dsn}, func(o *Options) { o.Lease = l })
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{f: f, lease: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		f.svc.RunReconciler(ctx, interval)
	}()
	var once sync.Once
	t.Cleanup(func() { once.Do(n.stop) })
	return n
}

// steady reports whether n's Headscale saw no call for a few intervals.
func steady(n *node, interval time.Duration) bool {
	before := n.calls()
	time.Sleep(5 * interval)
	return n.calls() == before
}

// cutProxy forwards TCP to PostgreSQL until cut: then it closes every
// connection and refuses new ones, as a network cut between one node and
// the database would.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setCut(true); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.wg.Add(2)
		p.mu.Unlock()
		go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
		go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// Two services on one PostgreSQL, each with its own Headscale double so
// that who reconciles is visible: only the lease holder reconciles; when
// its lease connection is cut the other takes over, and when that one
// shuts down the first takes over again.
func TestReconcilerRunsOnOneNodeAtATime(t *testing.T) {
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("PostgreSQL not configured (%s unset)", dbtest.EnvPostgres)
	}
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	proxy := newCutProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = proxy.ln.Addr().String()
	q := viaProxy.Query()
	q.Set("connect_timeout", "2")
	viaProxy.RawQuery = q.Encode()

	const interval = 20 * time.Millisecond
	a := startNode(t, dsn, viaProxy.String(), interval)
	require.Eventually(t, a.lease.Held, 10*time.Second, 5*time.Millisecond)
	b := startNode(t, dsn, dsn, interval)
	require.Eventually(t, func() bool { return a.calls() > 3 }, 10*time.Second, 5*time.Millisecond, "a reconciles")
	require.True(t, steady(b, interval), "b does not reconcile while a holds the lease")
	require.False(t, b.lease.Held())

	// The network between a and PostgreSQL is cut: PostgreSQL drops a's
	// session and its lock, b takes over, a learns it lost the lease and
	// stops reconciling, and keeps trying in vain once the cut heals.
	proxy.setCut(true)
	require.Eventually(t, func() bool { return b.calls() > 3 }, 10*time.Second, 5*time.Millisecond, "b takes over")
	require.Eventually(t, func() bool { return !a.lease.Held() }, 10*time.Second, 5*time.Millisecond, "a learns it lost the lease")
	require.True(t, steady(a, interval), "a no longer reconciles")
	proxy.setCut(false)
	require.True(t, steady(a, interval), "b still holds the lease")
	require.False(t, a.lease.Held())

	// b shuts down: it releases the lease and a takes over.
	b.stop()
	require.False(t, b.lease.Held())
	before := a.calls()
	require.Eventually(t, func() bool { return a.calls() > before+3 }, 10*time.Second, 5*time.Millisecond, "a takes over after b's shutdown")
	require.True(t, a.lease.Held())
}

// Without a lease (one box, SQLite) the reconciler always runs.
func TestReconcilerWithoutLeaseAlwaysRuns(t *testing.T) {
	f := newFixture(t, sqliteOnly(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.svc.RunReconciler(ctx, 10*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool {
		f.hs.mu.Lock()
		defer f.hs.mu.Unlock()
		return f.hs.calls > 3
	}, 10*time.Second, 5*time.Millisecond)
}

package chatserver

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/internal/redistest"
)

// Two nodes behind one proxy share one accept budget per client address
// when their AcceptLimiter is the same Redis: an address that used its
// burst on node a is refused on node b. With each node's own memory (the
// default) the same address gets a burst on each, which is what sharing
// prevents.
func TestNodesShareTheAcceptRateThroughRedis(t *testing.T) {
	dsn := sharedDSN(t)
	rs := redistest.Start(t)
	clientIP := func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
	opts := func(lim limits.Limiter) Options {
		return Options{AcceptPerSec: 0.01, AcceptBurst: 3, ClientIP: clientIP, AcceptLimiter: lim}
	}
	// dial opens a connection from addr with user u1's token; it reports
	// the HTTP status.
	dial := func(url, addr string) int {
		_, status := dialStatus(t, url, http.Header{"X-Test-Client": {addr}, "Authorization": {"Bearer u1"}})
		return status
	}

	t.Run("shared", func(t *testing.T) {
		shared := limits.NewRedis(redisClient(t, rs))
		a := startNode(t, "a", dsn, rs, opts(shared))
		b := startNode(t, "b", dsn, rs, opts(shared))
		for i, url := range []string{a.url, b.url, a.url} {
			if status := dial(url, "10.0.0.1"); status != http.StatusSwitchingProtocols {
				t.Fatalf("connection %d within the shared burst: HTTP %d", i, status)
			}
		}
		for name, url := range map[string]string{"a": a.url, "b": b.url} {
			if status := dial(url, "10.0.0.1"); status != http.StatusTooManyRequests {
				t.Fatalf("a fourth connection on node %s: HTTP %d, want 429", name, status)
			}
		}
		if status := dial(b.url, "10.0.0.2"); status != http.StatusSwitchingProtocols {
			t.Fatalf("another address: HTTP %d", status)
		}
	})

	t.Run("each node's memory", func(t *testing.T) {
		a := startNode(t, "a", dsn, rs, opts(nil))
		b := startNode(t, "b", dsn, rs, opts(nil))
		for _, url := range []string{a.url, b.url} {
			for i := range 3 {
				if status := dial(url, "10.0.0.3"); status != http.StatusSwitchingProtocols {
					t.Fatalf("connection %d within one node's own burst: HTTP %d", i, status)
				}
			}
			if status := dial(url, "10.0.0.3"); status != http.StatusTooManyRequests {
				t.Fatalf("a fourth connection on one node: HTTP %d, want 429", status)
			}
		}
	})
}

// failingLimiter answers every decision with an error.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, limits.Limit) (bool, time.Duration, error) {
	return false, 0, errors.New("limiter down")
}

func (failingLimiter) Refund(context.Context, string, limits.Limit) error {
	return errors.New("limiter down")
}

// An accept limiter that fails lets connections through (failing closed
// would lock every client out); the per-address cap still holds.
func TestAFailingAcceptLimiterAdmits(t *testing.T) {
	srv := startServer(t, Options{AcceptPerSec: 0.01, AcceptBurst: 1, MaxConnsPerAddr: 4, AcceptLimiter: failingLimiter{}})
	for i := range 4 {
		if ws, status := dialStatus(t, srv.url, bearer("u1")); ws == nil {
			t.Fatalf("connection %d with the limiter down: HTTP %d", i, status)
		}
	}
	if _, status := dialStatus(t, srv.url, bearer("u1")); status != http.StatusTooManyRequests {
		t.Fatalf("a fifth socket of an address: HTTP %d, want 429 (per-address cap)", status)
	}
}

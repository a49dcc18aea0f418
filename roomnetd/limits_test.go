package roomnetd

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/controlplane/lease"
	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/redisconn"
	"github.com/roomnet/roomnet/internal/redistest"
)

// The reconciler's lease follows the database: always held on SQLite, an
// advisory lock that only one node gets on PostgreSQL; the gauge says which.
func TestReconcilerLeaseFollowsTheDatabase(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			dsn := e.DSN
			if e.Name == "sqlite" {
				dsn = filepath.Join(t.TempDir(), "x.db")
			}
			var regs []*prometheus.Registry
			var held []bool
			for range 2 {
				reg := prometheus.NewRegistry()
				l, closer, err := reconcilerLease(e.Driver, dsn, reg, log)
				require.NoError(t, err)
				if closer != nil {
					t.Cleanup(func() { closer.Close() })
				}
				t.Cleanup(func() { _ = l.Release(context.Background()) })
				ok, err := l.TryAcquire(ctx)
				require.NoError(t, err)
				held = append(held, ok)
				regs = append(regs, reg)
				if e.Name == "sqlite" {
					require.IsType(t, lease.Local{}, l)
				}
			}
			want := []bool{true, e.Name == "sqlite"}
			require.Equal(t, want, held)
			for i, reg := range regs {
				v := 0.0
				if want[i] {
					v = 1
				}
				mfs, err := reg.Gather()
				require.NoError(t, err)
				require.Len(t, mfs, 1)
				require.Equal(t, "roomnet_reconciler_lease_held", mfs[0].GetName())
				require.Equal(t, v, mfs[0].GetMetric()[0].GetGauge().GetValue(), "node %d", i)
			}
		})
	}
}

// Without Redis the API keeps its own memory (nil); with Redis two nodes'
// limiters share one budget.
func TestSharedLimiterUsesRedisWhenConfigured(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	require.Nil(t, sharedLimiter(nil, prometheus.NewRegistry(), log))

	srv := redistest.Start(t)
	l := limits.PerWindow(2, time.Minute)
	allowed := 0
	var nodes []limits.Limiter
	for range 2 {
		rc, err := redisconn.Open(srv.URL())
		require.NoError(t, err)
		t.Cleanup(func() { rc.Close() })
		nodes = append(nodes, sharedLimiter(rc, prometheus.NewRegistry(), log))
	}
	for i := range 6 {
		ok, _, err := nodes[i%2].Allow(context.Background(), "auth:192.0.2.9", l)
		require.NoError(t, err)
		if ok {
			allowed++
		}
	}
	require.Equal(t, 2, allowed)
}

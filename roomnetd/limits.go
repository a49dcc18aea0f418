package roomnetd

// The control plane's parts that let several roomnetd nodes share one
// deployment (#16, docs/scale-out.md §3.4): rate limits shared through
// Redis, and the reconciler's lease on PostgreSQL. Each returns what the
// single box has used all along when the shared engine is not configured.

import (
	"database/sql"
	"fmt"
	"io"
	"log/slog"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/roomnet/roomnet/controlplane/lease"
	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/controlplane/service"
)

// sharedLimiter returns api.Options.Limiter and chat's AcceptLimiter:
// nil without Redis (each node's memory, the single box's limits), or
// GCRA in Redis, one budget per key for every node, falling back to this
// node's memory while Redis fails (roomnet_ratelimit_shared_up,
// roomnet_ratelimit_fallback_total).
func sharedLimiter(rc redis.UniversalClient, reg prometheus.Registerer, log *slog.Logger) limits.Limiter {
	if rc == nil {
		return nil
	}
	return limits.NewFallback(limits.NewRedis(rc), limits.NewMemory(limits.MemoryOptions{}), limits.FallbackOptions{
		Logger: log.With("component", "ratelimit"), Registerer: reg,
	})
}

// reconcilerLeaseName names the reconciler's advisory lock.
const reconcilerLeaseName = "reconciler"

// reconcilerLease returns service.Options.Lease and what to close once the
// reconciler stopped (nil: nothing). On PostgreSQL it is an advisory lock
// on a small pool of its own, holding one connection while held: one node
// of a deployment reconciles at a time. On SQLite, which no other node can
// share, it is always held. It registers roomnet_reconciler_lease_held.
func reconcilerLease(driver, dsn string, reg prometheus.Registerer, log *slog.Logger) (service.Lease, io.Closer, error) {
	var l lease.Lease = lease.Local{}
	var closer io.Closer
	if driver == "postgres" {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("opening the reconciler lease's database: %w", err)
		}
		db.SetMaxOpenConns(2)
		db.SetMaxIdleConns(1)
		l, closer = lease.NewPostgres(db, reconcilerLeaseName, log.With("component", "lease")), db
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "roomnet_reconciler_lease_held",
		Help: "1 while this node holds the reconciler lease (it reconciles), 0 while another node does.",
	}, func() float64 {
		if l.Held() {
			return 1
		}
		return 0
	}))
	return l, closer, nil
}

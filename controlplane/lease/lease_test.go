package lease_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/roomnet/roomnet/controlplane/lease"
	"github.com/roomnet/roomnet/internal/dbtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// postgres returns a fresh database's DSN, or skips.
func postgres(t *testing.T) string {
	t.Helper()
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("PostgreSQL not configured (%s unset)", dbtest.EnvPostgres)
	}
	return dsn
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// Holder returns the backend pid holding the lease name in admin's
// database, or 0. (Advisory locks are per database; other packages' tests
// hold leases of the same name in their own databases of the same server
// at the same time: CI once killed one of theirs instead.)
func holder(t *testing.T, admin *sql.DB, name string) int {
	t.Helper()
	k := uint64(lease.Key(name))
	var pid int
	err := admin.QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1`, int64(k>>32), int64(k&0xffffffff)).Scan(&pid)
	if err == sql.ErrNoRows {
		return 0
	}
	require.NoError(t, err)
	return pid
}

func try(t *testing.T, l lease.Lease) bool {
	t.Helper()
	ok, err := l.TryAcquire(context.Background())
	require.NoError(t, err)
	return ok
}

// One node holds the lease; the other takes it when the holder's
// connection dies, and again when a holder releases it.
func TestPostgresLeaseIsExclusiveAndMoves(t *testing.T) {
	dsn := postgres(t)
	admin := open(t, dsn)
	a := lease.NewPostgres(open(t, dsn), "reconciler", nil)
	b := lease.NewPostgres(open(t, dsn), "reconciler", nil)
	other := lease.NewPostgres(open(t, dsn), "another", nil)

	require.True(t, try(t, a))
	require.False(t, try(t, b), "held by a")
	require.True(t, try(t, a), "a still holds it")
	require.True(t, try(t, other), "another name is another lock")
	require.True(t, a.Held())
	require.False(t, b.Held())
	pidA := holder(t, admin, "reconciler")
	require.NotZero(t, pidA)

	// a's session dies (a network cut, PostgreSQL restarted it, the node
	// died): the lock goes with it and b takes it.
	var killed bool
	require.NoError(t, admin.QueryRow("SELECT pg_terminate_backend($1)", pidA).Scan(&killed))
	require.True(t, killed)
	require.Eventually(t, func() bool { return try(t, b) }, 10*time.Second, 20*time.Millisecond, "b takes over")
	require.NotEqual(t, pidA, holder(t, admin, "reconciler"))
	ok, err := a.TryAcquire(context.Background())
	require.NoError(t, err, "losing the lease is an answer, not an error")
	require.False(t, ok, "a learns that it lost the lease")
	require.False(t, a.Held())

	// b shuts down: a takes over at its next attempt.
	require.NoError(t, b.Release(context.Background()))
	require.False(t, b.Held())
	require.True(t, try(t, a), "released: free at once")
	require.False(t, try(t, b))

	// A holder whose connection died but whose lock nobody took keeps
	// the lease, on a fresh connection.
	require.NoError(t, admin.QueryRow("SELECT pg_terminate_backend($1)", holder(t, admin, "reconciler")).Scan(&killed))
	require.Eventually(t, func() bool { return holder(t, admin, "reconciler") == 0 }, 10*time.Second, 20*time.Millisecond)
	require.True(t, try(t, a), "a takes it back itself")
	require.NotZero(t, holder(t, admin, "reconciler"))
	require.NoError(t, a.Release(context.Background()))
	require.NoError(t, other.Release(context.Background()))
	require.Zero(t, holder(t, admin, "reconciler"))
}

// A database that does not answer is an error, and no lease.
func TestPostgresLeaseWithoutDatabase(t *testing.T) {
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	defer db.Close()
	l := lease.NewPostgres(db, "reconciler", nil)
	ok, err := l.TryAcquire(context.Background())
	require.Error(t, err)
	require.False(t, ok)
	require.False(t, l.Held())
}

func TestLocalIsAlwaysHeld(t *testing.T) {
	var l lease.Local
	require.True(t, try(t, l))
	require.NoError(t, l.Release(context.Background()))
	require.True(t, l.Held())
}

package roomnetd_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/roomnettest"
)

// leaseHeld reads roomnet_reconciler_lease_held from h's registry.
func leaseHeld(t *testing.T, h *roomnettest.Harness) bool {
	t.Helper()
	mfs, err := h.Server.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "roomnet_reconciler_lease_held" {
			return mf.GetMetric()[0].GetGauge().GetValue() == 1
		}
	}
	t.Fatal("no roomnet_reconciler_lease_held")
	return false
}

// Two whole servers on one PostgreSQL: exactly one holds the reconciler
// lease, and it stays so, also across a restart of the holder.
func TestTwoServersOnPostgresReconcileOneAtATime(t *testing.T) {
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("%s unset: no PostgreSQL to run on", dbtest.EnvPostgres)
	}
	pg := func(s *roomnettest.Settings) {
		s.Config.Database.Driver = "postgres"
		s.Config.Database.DSN = dsn
		s.Config.Rooms.ReconcileInterval = time.Second
	}
	nodes := []*roomnettest.Harness{roomnettest.New(t, pg), roomnettest.New(t, pg)}
	exactlyOne := func() (holder int, ok bool) {
		held := 0
		for i, h := range nodes {
			if leaseHeld(t, h) {
				held++
				holder = i
			}
		}
		return holder, held == 1
	}
	holder, ok := exactlyOne()
	require.True(t, ok, "one of two nodes holds the lease")
	require.Equal(t, 0, holder, "the node that started first")
	for range 3 {
		time.Sleep(time.Second)
		_, ok := exactlyOne()
		require.True(t, ok, "never both, never neither")
	}

	nodes[holder].Restart()
	require.Eventually(t, func() bool { _, ok := exactlyOne(); return ok }, 10*time.Second, 100*time.Millisecond,
		"after the holder's restart one node holds the lease again")
}

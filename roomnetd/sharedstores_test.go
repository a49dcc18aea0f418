package roomnetd_test

import (
	"testing"

	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/redistest"
	"github.com/roomnet/roomnet/roomnettest"
)

// sharedStores is the set-up of several nodes of one deployment: the
// settings that put a node on the test's PostgreSQL and on a private
// redis-server started for the test, and that server (to stop or restart
// it). Without PostgreSQL the test is skipped.
func sharedStores(t testing.TB) (func(*roomnettest.Settings), *redistest.Server) {
	t.Helper()
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("several nodes share PostgreSQL: set %s", dbtest.EnvPostgres)
	}
	rs := redistest.Start(t)
	return func(s *roomnettest.Settings) {
		s.Config.Database.Driver, s.Config.Database.DSN = "postgres", dsn
		s.Config.Redis.URL = rs.URL()
	}, rs
}

package gormdb_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/gormdb"
)

type row struct {
	Conv string `gorm:"primaryKey;size:80"`
	Seq  uint64 `gorm:"primaryKey"`
	Key  string `gorm:"size:64;uniqueIndex"`
	Body string
}

// Nodes starting at once on a fresh PostgreSQL database all migrate it:
// without the migration lock the losers fail on the tables and indexes
// the winner created in the meantime.
func TestNodesMigrateAFreshDatabaseAtOnce(t *testing.T) {
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skip("needs " + dbtest.EnvPostgres)
	}
	for round := range 3 {
		const nodes = 6
		errs := make([]error, nodes)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range nodes {
			wg.Go(func() {
				db, err := gormdb.Open("postgres", dsn)
				if err != nil {
					errs[i] = err
					return
				}
				defer func() {
					sqlDB, _ := db.DB()
					sqlDB.Close()
				}()
				<-start
				errs[i] = gormdb.Migrate(db, &row{})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "round %d, node %d", round, i)
		}
		db, err := gormdb.Open("postgres", dsn)
		require.NoError(t, err)
		require.True(t, db.Migrator().HasTable(&row{}))
		require.NoError(t, db.Migrator().DropTable(&row{}))
		sqlDB, _ := db.DB()
		sqlDB.Close()
	}
}

// A burst of queries (a thousand players reconnecting) waits for the
// pool's connections instead of opening one each, which would exhaust
// PostgreSQL's max_connections for every node.
func TestPostgresPoolIsBounded(t *testing.T) {
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skip("needs " + dbtest.EnvPostgres)
	}
	db, err := gormdb.Open("postgres", dsn)
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() { require.NoError(t, db.Exec("SELECT pg_sleep(0.02)").Error) })
	}
	wg.Wait()
	st := sqlDB.Stats()
	require.Equal(t, gormdb.PostgresPool, st.MaxOpenConnections)
	require.LessOrEqual(t, st.OpenConnections, gormdb.PostgresPool)
	require.Positive(t, st.WaitCount, "the burst waited for connections")
}

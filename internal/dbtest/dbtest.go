// Package dbtest gives tests the database engines to run on: SQLite in a
// temporary directory always, and PostgreSQL when ROOMNET_TEST_POSTGRES
// holds a DSN of a server that may create databases (.ci/run starts one).
// Each engine is a fresh, empty database dropped when the test ends.
package dbtest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the driver gorm's postgres dialect uses
)

// Engine is a database to test on.
type Engine struct {
	Name   string // "sqlite" or "postgres"
	Driver string
	DSN    string
}

// EnvPostgres names the variable holding the PostgreSQL DSN.
const EnvPostgres = "ROOMNET_TEST_POSTGRES"

// Engines returns SQLite and, when configured, PostgreSQL.
func Engines(t testing.TB) []Engine {
	t.Helper()
	out := []Engine{{Name: "sqlite", Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "test.db")}}
	if pg := Postgres(t); pg != "" {
		out = append(out, Engine{Name: "postgres", Driver: "postgres", DSN: pg})
	} else {
		t.Logf("PostgreSQL not configured (%s unset): testing on SQLite only", EnvPostgres)
	}
	return out
}

// Postgres creates a fresh database and returns its DSN, or "" when
// ROOMNET_TEST_POSTGRES is unset.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		return ""
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("opening %s: %v", EnvPostgres, err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "roomnet_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parsing %s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

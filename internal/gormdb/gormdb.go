// Package gormdb opens the gorm databases roomnet stores use, with one
// set of engine settings: SQLite (pure Go) in WAL mode with a busy
// timeout and a single writer connection, or PostgreSQL with a bounded
// pool.
package gormdb

import (
	"fmt"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Open connects to driver ("sqlite" or "postgres") at dsn.
func Open(driver, dsn string) (*gorm.DB, error) {
	var dial gorm.Dialector
	switch driver {
	case "sqlite":
		dial = sqlite.Open(dsn + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)")
	case "postgres":
		dial = postgres.Open(dsn)
	default:
		return nil, fmt.Errorf("unknown database driver %q", driver)
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard, TranslateError: true, SkipDefaultTransaction: true})
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", driver, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	if driver == "sqlite" {
		sqlDB.SetMaxOpenConns(1) // one writer; WAL keeps readers cheap
		return db, nil
	}
	// Without a bound, a thousand players reconnecting at once open a
	// connection each and exhaust PostgreSQL's max_connections (100 by
	// default) for every node; callers wait for a free connection instead.
	sqlDB.SetMaxOpenConns(PostgresPool)
	sqlDB.SetMaxIdleConns(PostgresPool)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// PostgresPool is the most connections one PostgreSQL pool opens. A
// roomnetd node has two (the control plane's store and chat's) and the
// reconciler lease's 2, so a node uses at most 2*PostgresPool+2.
const PostgresPool = 16

// migrateLock is the PostgreSQL advisory lock key that serializes
// migrations ("roomnet-migrate" as 8 bytes).
const migrateLock = 0x726e2d6d69677274

// Migrate creates or updates the models' tables. On PostgreSQL it holds an
// advisory lock for the whole transaction, so nodes starting at once on a
// fresh database do not race to create the same tables and indexes (the
// loser would fail with a duplicate key).
func Migrate(db *gorm.DB, models ...any) error {
	if db.Dialector.Name() != "postgres" {
		return db.AutoMigrate(models...)
	}
	return db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", int64(migrateLock)).Error; err != nil {
			return fmt.Errorf("taking the migration lock: %w", err)
		}
		return tx.AutoMigrate(models...)
	})
}

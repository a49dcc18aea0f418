// Package gormdb opens the gorm databases roomnet stores use, with one
// set of engine settings: SQLite (pure Go) in WAL mode with a busy
// timeout and a single writer connection, or PostgreSQL.
package gormdb

import (
	"fmt"

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
	if driver == "sqlite" {
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(1) // one writer; WAL keeps readers cheap
	}
	return db, nil
}

package config

import (
	"errors"
	"fmt"
	"net/url"
)

// Redis names the Redis that several roomnetd nodes share: chat sequence
// numbers and the chat bus (docs/scale-out.md §3). Empty URL: everything
// stays in process, one node only.
type Redis struct {
	// URL is redis://[user:password@]host:port/db or rediss:// (secret:
	// it may hold a password; never logged).
	URL string
}

// Enabled reports whether a Redis is configured.
func (r Redis) Enabled() bool { return r.URL != "" }

// finish validates the Redis options against the database they go with.
func (r Redis) finish(db Database) []error {
	if r.URL == "" {
		return nil
	}
	var errs []error
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		// The value may hold a password: the error names the key only.
		errs = append(errs, errors.New("redis.url: want redis://host:port/db or rediss://…"))
	}
	if db.Driver == "sqlite" {
		errs = append(errs, fmt.Errorf("redis.url: several nodes cannot share a SQLite database; set database.driver=postgres with a shared database.dsn, or leave redis.url empty for one node"))
	}
	return errs
}

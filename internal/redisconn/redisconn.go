// Package redisconn opens the Redis client that roomnet's engines share
// (chat sequence numbers and bus, shared rate limits), with timeouts that
// make a Redis outage fail fast instead of stalling requests: callers turn
// its errors into retryable answers and keep serving from the store.
//
// go-redis logs through one process-wide logger (redis.SetLogger) that
// writes to stderr by default. RouteLogs, called once by a main before
// the first Open, replaces it with an adapter to the process's
// *slog.Logger; otherwise the first Open installs one to slog's default
// logger. Either way each line goes to slog at debug level with
// component=redis, once per process, and redisconn keeps nothing it could
// change later (a sync.Once). The lines are the client's view of an
// outage (a refused dial, a dropped pub/sub connection); roomnet reports
// the outage itself at warn level (the chat bus's lost/back lines,
// /healthz), so they stay below info.
package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Timeouts applied to every connection unless the URL sets its own.
const (
	DialTimeout  = 500 * time.Millisecond
	ReadTimeout  = 500 * time.Millisecond
	WriteTimeout = 500 * time.Millisecond
)

// Open parses a redis:// or rediss:// URL and returns a client. It does not
// connect: the first command does, and an unreachable server fails that
// command within the timeouts above.
func Open(url string) (*redis.Client, error) {
	routeLogs.Do(func() { redis.SetLogger(slogAdapter{}) })
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing redis url: %w", err)
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = ReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = WriteTimeout
	}
	// A refused dial is an outage: answer at once rather than retrying
	// the dial five times (go-redis's default).
	o.DialerRetries = 1
	// One retry hides a connection the server closed while idle; more
	// would only stretch an outage's errors.
	o.MaxRetries = 1
	// No CLIENT SETINFO / MAINT_NOTIFICATIONS probing: plain Redis 7 and
	// Valkey answer them with errors that would be logged on every dial.
	o.DisableIdentity = true
	o.Protocol = 2
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(o), nil
}

// RouteLogs sends go-redis's log lines to log, at debug level with
// component=redis. go-redis's logger is process-wide: call RouteLogs once,
// from main, before the first Open; the first of RouteLogs and Open
// decides and later calls change nothing.
func RouteLogs(log *slog.Logger) {
	routeLogs.Do(func() { redis.SetLogger(slogAdapter{log}) })
}

// routeLogs installs slogAdapter as go-redis's logger once per process.
var routeLogs sync.Once

// slogAdapter is go-redis's logger written to log (nil: slog's default
// logger, read at each line).
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	log := a.log
	if log == nil {
		log = slog.Default()
	}
	log.Log(ctx, slog.LevelDebug, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "redis")
}

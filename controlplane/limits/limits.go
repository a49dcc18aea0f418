// Package limits decides whether an action may happen now under a rate
// limit, with the same answers whichever engine keeps the state: Memory
// (one process, the single box) or Redis (every node of a deployment
// shares one budget per key). Both run the generic cell rate algorithm
// (GCRA), a token bucket kept as one timestamp per key. Fallback puts
// Memory behind Redis so that a Redis outage never locks anyone out.
//
// The package knows nothing of HTTP or accounts: callers choose the keys
// and the limits. It must not fail closed.
package limits

import (
	"context"
	"time"
)

// Limit is a token bucket: Burst tokens when full, one more every Every.
// Every action takes one token; an empty bucket refuses.
type Limit struct {
	Every time.Duration
	Burst int
}

// PerSecond is a Limit of rate actions a second with the given burst.
func PerSecond(rate float64, burst int) Limit {
	return Limit{Every: time.Duration(float64(time.Second) / rate), Burst: burst}
}

// PerWindow is a Limit of n actions per window, all of them at once if
// the bucket is full.
func PerWindow(n int, window time.Duration) Limit {
	return Limit{Every: window / time.Duration(n), Burst: n}
}

// valid reports whether l can limit anything; an invalid Limit allows.
func (l Limit) valid() bool { return l.Every > 0 && l.Burst > 0 }

// Limiter decides and remembers. Keys name one budget each, the same on
// every node (no node identity in them); a key must always be used with
// the same Limit.
type Limiter interface {
	// Allow takes a token of key's bucket. ok false: the bucket is empty
	// and the next token comes in retryAfter; nothing was taken.
	Allow(ctx context.Context, key string, l Limit) (ok bool, retryAfter time.Duration, err error)
	// Refund gives back a token that Allow took, for an action that turned
	// out not to count (a login whose password was right). The bucket
	// never holds more than Burst.
	Refund(ctx context.Context, key string, l Limit) error
}

var (
	_ Limiter = (*Memory)(nil)
	_ Limiter = (*Redis)(nil)
	_ Limiter = (*Fallback)(nil)
)

package limits

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FallbackOptions configures a Fallback.
type FallbackOptions struct {
	Logger *slog.Logger
	// Registerer receives roomnet_ratelimit_fallback_total and
	// roomnet_ratelimit_shared_up; nil: not registered.
	Registerer prometheus.Registerer
	// Retry is how long after a failure the shared engine is left alone
	// before one request tries it again (default 1s): while it is down,
	// requests do not each wait for its timeout.
	Retry time.Duration
	Now   func() time.Time // default time.Now
}

// Fallback asks a shared engine (Redis) and, while it fails, this node's
// Memory instead: limits then hold per node (N nodes give N budgets) rather
// than failing closed, which would refuse every login. It never returns an
// error. Recovery needs no restart: after Retry one request probes the
// shared engine, and the first success switches back.
type Fallback struct {
	shared Limiter
	local  *Memory
	log    *slog.Logger
	retry  time.Duration
	now    func() time.Time

	downUntil atomic.Int64 // unix ns; 0: the shared engine is up
	fallbacks prometheus.Counter
	up        prometheus.Gauge
}

// NewFallback returns shared backed by local.
func NewFallback(shared Limiter, local *Memory, o FallbackOptions) *Fallback {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retry == 0 {
		o.Retry = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f := &Fallback{shared: shared, local: local, log: o.Logger, retry: o.Retry, now: o.Now,
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomnet_ratelimit_fallback_total",
			Help: "Rate-limit decisions this node made from its own memory because the shared (Redis) limiter failed.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomnet_ratelimit_shared_up",
			Help: "1 while rate limits are shared through Redis, 0 while this node limits on its own.",
		}),
	}
	f.up.Set(1)
	if o.Registerer != nil {
		o.Registerer.MustRegister(f.fallbacks, f.up)
	}
	return f
}

// Shared reports whether decisions go to the shared engine right now.
func (f *Fallback) Shared() bool { return f.downUntil.Load() == 0 }

// Allow implements Limiter; err is always nil.
func (f *Fallback) Allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	if f.useShared() {
		ok, wait, err := f.shared.Allow(ctx, key, l)
		if err == nil {
			f.recovered()
			return ok, wait, nil
		}
		f.failed(ctx, err)
	}
	f.fallbacks.Inc()
	return f.local.Allow(ctx, key, l)
}

// Refund implements Limiter; err is always nil. A token taken from one
// engine and refunded to the other (Redis failed or came back in between)
// is lost or given twice: at most one action, once per outage.
func (f *Fallback) Refund(ctx context.Context, key string, l Limit) error {
	if f.useShared() {
		err := f.shared.Refund(ctx, key, l)
		if err == nil {
			f.recovered()
			return nil
		}
		f.failed(ctx, err)
	}
	return f.local.Refund(ctx, key, l)
}

// useShared reports whether to ask the shared engine: it is up, or it has
// been down for Retry and this caller won the right to probe it.
func (f *Fallback) useShared() bool {
	until := f.downUntil.Load()
	if until == 0 {
		return true
	}
	now := f.now().UnixNano()
	return now >= until && f.downUntil.CompareAndSwap(until, now+int64(f.retry))
}

func (f *Fallback) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the caller gave up; that says nothing about Redis
	}
	next := f.now().Add(f.retry).UnixNano()
	if f.downUntil.Swap(next) == 0 {
		f.up.Set(0)
		f.log.Warn("shared rate limits unavailable: limiting on this node alone until Redis answers", "err", err)
	}
}

func (f *Fallback) recovered() {
	if f.downUntil.Load() != 0 && f.downUntil.Swap(0) != 0 {
		f.up.Set(1)
		f.log.Info("shared rate limits back: limiting through Redis again")
	}
}

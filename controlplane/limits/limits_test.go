package limits_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/internal/redisconn"
	"github.com/roomnet/roomnet/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time for Memory.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1000, 0)} }
func memory(c *clock, max int) *limits.Memory {
	return limits.NewMemory(limits.MemoryOptions{Now: c.now, MaxKeys: max})
}

// The per-account login rule as a token bucket: 3 wrong passwords per 30 s,
// a token back every 10 s; refunded tokens (right passwords) never count.
func TestMemoryBucket(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := memory(c, 0)
	l := limits.PerWindow(3, 30*time.Second)
	require.Equal(t, limits.Limit{Every: 10 * time.Second, Burst: 3}, l)
	allow := func(key string) (bool, time.Duration) {
		ok, wait, err := m.Allow(ctx, key, l)
		require.NoError(t, err)
		return ok, wait
	}
	for i := range 10 {
		ok, _ := allow("alice")
		require.True(t, ok, "refunded action %d", i)
		require.NoError(t, m.Refund(ctx, "alice", l))
	}
	require.Zero(t, m.Len(), "a bucket refunded to full is forgotten")
	for i := range 3 {
		ok, _ := allow("alice")
		require.True(t, ok, "action %d of the burst", i)
	}
	ok, wait := allow("alice")
	require.False(t, ok)
	require.Equal(t, 10*time.Second, wait)
	ok, _ = allow("bob")
	require.True(t, ok, "another key has its own bucket")
	c.add(4 * time.Second)
	ok, wait = allow("alice")
	require.False(t, ok)
	require.Equal(t, 6*time.Second, wait, "a refused action takes nothing")
	c.add(6 * time.Second)
	ok, _ = allow("alice")
	require.True(t, ok, "one token back after Every")
	ok, _ = allow("alice")
	require.False(t, ok, "and only one")
	// A refund never fills past Burst.
	c.add(time.Hour)
	for range 5 {
		require.NoError(t, m.Refund(ctx, "alice", l))
	}
	for i := range 3 {
		ok, _ := allow("alice")
		require.True(t, ok, "action %d after a long pause", i)
	}
	ok, _ = allow("alice")
	require.False(t, ok, "refunds on a full bucket gave nothing extra")
}

// A full Memory refuses new keys rather than forgetting limited ones, and
// makes room as buckets refill.
func TestMemoryBoundsItsKeys(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := memory(c, 2)
	l := limits.PerWindow(1, time.Minute)
	for _, k := range []string{"a", "b"} {
		ok, _, _ := m.Allow(ctx, k, l)
		require.True(t, ok)
	}
	ok, wait, _ := m.Allow(ctx, "c", l)
	require.False(t, ok, "full: a new key is refused")
	require.Equal(t, time.Minute, wait)
	ok, _, _ = m.Allow(ctx, "a", l)
	require.False(t, ok, "a limited key was not forgotten")
	c.add(time.Minute + time.Second)
	ok, _, _ = m.Allow(ctx, "c", l)
	require.True(t, ok, "refilled buckets were swept")
	require.Equal(t, 1, m.Len())
}

// An invalid limit limits nothing (a zero-valued option is "off").
func TestZeroLimitAllows(t *testing.T) {
	m := memory(newClock(), 0)
	for range 3 {
		ok, _, err := m.Allow(context.Background(), "k", limits.Limit{})
		require.NoError(t, err)
		require.True(t, ok)
	}
}

func redisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c, err := redisconn.Open(srv.URL())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// The Redis engine answers what Memory answers, on Redis's clock, and two
// clients (two nodes) share one budget per key.
func TestRedisSharesOneBudget(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	nodes := []*limits.Redis{limits.NewRedis(redisClient(t, srv)), limits.NewRedis(redisClient(t, srv))}
	l := limits.PerWindow(5, 50*time.Second) // a token every 10 s: none refills during the test
	allowed := 0
	for i := range 12 {
		ok, wait, err := nodes[i%2].Allow(ctx, "auth:192.0.2.1", l)
		require.NoError(t, err)
		if ok {
			allowed++
			continue
		}
		require.Greater(t, wait, 9*time.Second, "attempt %d", i)
		require.LessOrEqual(t, wait, 10*time.Second, "attempt %d", i)
	}
	require.Equal(t, 5, allowed, "two nodes, one budget")

	// Refunds from either node go back to the one bucket.
	require.NoError(t, nodes[0].Refund(ctx, "auth:192.0.2.1", l))
	ok, _, err := nodes[1].Allow(ctx, "auth:192.0.2.1", l)
	require.NoError(t, err)
	require.True(t, ok, "the refunded token")
	ok, _, err = nodes[0].Allow(ctx, "auth:192.0.2.1", l)
	require.NoError(t, err)
	require.False(t, ok)

	// The key expires when its bucket is full again, not before.
	ttl, err := redisClient(t, srv).PTTL(ctx, limits.KeyPrefix+"auth:192.0.2.1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 40*time.Second)
	require.LessOrEqual(t, ttl, 50*time.Second)

	// A refund of a key Redis does not hold writes nothing.
	require.NoError(t, nodes[0].Refund(ctx, "nobody", l))
	n, err := redisClient(t, srv).Exists(ctx, limits.KeyPrefix+"nobody").Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// Limits finer than Redis's microseconds still decide (rounded up to one
// microsecond) instead of failing the script.
func TestRedisFineLimits(t *testing.T) {
	srv := redistest.Start(t)
	r := limits.NewRedis(redisClient(t, srv))
	for _, l := range []limits.Limit{limits.PerSecond(1e9, 1e9), {Every: time.Nanosecond, Burst: 1}} {
		for range 3 {
			_, _, err := r.Allow(context.Background(), "fine", l)
			require.NoError(t, err, "%+v", l)
			require.NoError(t, r.Refund(context.Background(), "fine", l))
		}
	}
}

// The bucket refills on Redis's clock: after Every a token is back.
func TestRedisRefills(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := limits.NewRedis(redisClient(t, srv))
	l := limits.Limit{Every: 300 * time.Millisecond, Burst: 2}
	for range 2 {
		ok, _, err := r.Allow(ctx, "k", l)
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, wait, err := r.Allow(ctx, "k", l)
	require.NoError(t, err)
	require.False(t, ok)
	require.Greater(t, wait, time.Duration(0))
	require.LessOrEqual(t, wait, 300*time.Millisecond)
	time.Sleep(wait + 20*time.Millisecond)
	ok, _, err = r.Allow(ctx, "k", l)
	require.NoError(t, err)
	require.True(t, ok, "a token came back after the advertised wait")
}

// With Redis gone each node limits on its own (it neither fails nor lets
// everything through), counts it, and goes back to the shared budget by
// itself once Redis answers again.
func TestFallbackWhenRedisStopsAndComesBack(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l := limits.PerWindow(3, 30*time.Second)
	type node struct {
		f   *limits.Fallback
		reg *prometheus.Registry
	}
	var nodes []node
	for range 2 {
		reg := prometheus.NewRegistry()
		f := limits.NewFallback(limits.NewRedis(redisClient(t, srv)), limits.NewMemory(limits.MemoryOptions{}),
			limits.FallbackOptions{Registerer: reg, Retry: 200 * time.Millisecond})
		nodes = append(nodes, node{f, reg})
	}
	count := func(n node, key string, tries int) int {
		allowed := 0
		for range tries {
			ok, _, err := n.f.Allow(ctx, key, l)
			require.NoError(t, err, "a fallback never fails")
			if ok {
				allowed++
			}
		}
		return allowed
	}
	require.Equal(t, 3, count(nodes[0], "k1", 2)+count(nodes[1], "k1", 4), "shared while Redis is up")
	require.Zero(t, metric(t, nodes[0].reg, "roomnet_ratelimit_fallback_total"))

	srv.Stop()
	for i, n := range nodes {
		require.Equal(t, 3, count(n, "k2", 6), "node %d limits on its own", i)
		require.False(t, n.f.Shared())
		require.Equal(t, 6.0, metric(t, n.reg, "roomnet_ratelimit_fallback_total"))
		require.Equal(t, 0.0, metric(t, n.reg, "roomnet_ratelimit_shared_up"))
	}

	srv.Restart()
	require.Eventually(t, func() bool {
		_, _, _ = nodes[0].f.Allow(ctx, "probe", l)
		_, _, _ = nodes[1].f.Allow(ctx, "probe", l)
		return nodes[0].f.Shared() && nodes[1].f.Shared()
	}, 10*time.Second, 50*time.Millisecond, "both nodes use Redis again")
	require.Equal(t, 3, count(nodes[0], "k3", 2)+count(nodes[1], "k3", 4), "shared again after Redis came back")
	require.Equal(t, 1.0, metric(t, nodes[0].reg, "roomnet_ratelimit_shared_up"))
}

// A caller that gives up does not mark Redis down.
func TestFallbackIgnoresCancelledCallers(t *testing.T) {
	srv := redistest.Start(t)
	f := limits.NewFallback(limits.NewRedis(redisClient(t, srv)), limits.NewMemory(limits.MemoryOptions{}), limits.FallbackOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok, _, err := f.Allow(ctx, "k", limits.PerWindow(1, time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, f.Shared())
}

// metric is the value of reg's counter or gauge name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// BenchmarkAllow is the cost of one decision: in memory, and through a
// real Redis on loopback (one script call, what every API request pays
// with Redis configured).
func BenchmarkAllow(b *testing.B) {
	l := limits.PerSecond(1e9, 1e9)
	run := func(b *testing.B, lim limits.Limiter) {
		b.ReportAllocs()
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if _, _, err := lim.Allow(ctx, "api:192.0.2."+strconv.Itoa(i%256), l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, limits.NewMemory(limits.MemoryOptions{})) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		c, err := redisconn.Open(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, limits.NewRedis(c))
	})
}

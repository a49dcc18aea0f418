package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/controlplane/api"
	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/internal/redisconn"
	"github.com/roomnet/roomnet/internal/redistest"
)

// apiNode is one roomnetd's API in front of a shared store: its own echo
// instance, registry and Redis client, as on another machine.
type apiNode struct {
	url string
	lim *limits.Fallback
	reg *prometheus.Registry
}

// twoNodes starts two API instances on one store whose limits go through
// one real Redis (each with its own client and memory fallback).
func twoNodes(t *testing.T, srv *redistest.Server, o api.Options) (*service.Service, []apiNode) {
	t.Helper()
	st, err := store.Open("sqlite", filepath.Join(t.TempDir(), "cp.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	// Accounts need no Headscale: the shard is never called.
	svc, err := service.New(st, service.Options{Shards: []service.Shard{{Name: "default"}}, OpenSignup: true, Logger: log})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	var nodes []apiNode
	for range 2 {
		rc, err := redisconn.Open(srv.URL())
		require.NoError(t, err)
		t.Cleanup(func() { rc.Close() })
		reg := prometheus.NewRegistry()
		lim := limits.NewFallback(limits.NewRedis(rc), limits.NewMemory(limits.MemoryOptions{}),
			limits.FallbackOptions{Registerer: reg, Retry: 100 * time.Millisecond})
		o := o
		o.Service, o.Logger, o.Registry, o.Limiter = svc, log, reg, lim
		o.Ready = func(context.Context) error { return nil }
		hs := httptest.NewServer(api.New(o))
		t.Cleanup(hs.Close)
		nodes = append(nodes, apiNode{url: hs.URL, lim: lim, reg: reg})
	}
	return svc, nodes
}

// Two nodes on one Redis share every login budget: per address and per
// account, an attacker who spreads guesses over the nodes gets what one
// node would give, and the 429s carry Retry-After. With Redis stopped each
// node limits on its own (logins keep working), and once Redis is back the
// budgets are shared again without a restart.
func TestNodesShareLoginLimitsThroughRedis(t *testing.T) {
	srv := redistest.Start(t)
	const perMinute, failures = 4, 3
	svc, nodes := twoNodes(t, srv, api.Options{AuthPerMinute: perMinute, LoginFailures: failures, LoginFailureWindow: time.Hour})
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		_, err := svc.Register(ctx, u, "password-"+u)
		require.NoError(t, err)
	}
	try := func(n int, ip, user, password string) (int, string) {
		return post(t, from(ip), nodes[n%2].url+"/api/v1/auth/login", login(user, password), nil)
	}

	// Per address: a fresh account name each time, spread over both nodes.
	// The bucket refills one login every minute/perMinute: on a slow
	// machine (bcrypt under -race) the attempts may earn one back, so the
	// count of logins let through is checked against the time they took.
	refills := func(since time.Time) int { return int(time.Since(since) / (time.Minute / perMinute)) }
	var statuses []int
	start := time.Now()
	for i := range 2 * perMinute {
		status, retry := try(i, "127.0.3.1", fmt.Sprintf("nobody%d", i), "wrong-password")
		statuses = append(statuses, status)
		if status == http.StatusTooManyRequests {
			n, err := strconv.Atoi(retry)
			require.NoError(t, err, "Retry-After %q", retry)
			require.True(t, n >= 1 && n <= 60/perMinute, "Retry-After %d: the next token of %d a minute", n, perMinute)
		}
	}
	allowed := 0
	for allowed < len(statuses) && statuses[allowed] == http.StatusUnauthorized {
		allowed++
	}
	for _, st := range statuses[allowed:] {
		require.Equal(t, http.StatusTooManyRequests, st, "two nodes, one budget per address: %v", statuses)
	}
	require.GreaterOrEqual(t, allowed, perMinute, "two nodes, one budget per address: %v", statuses)
	require.LessOrEqual(t, allowed, perMinute+refills(start), "two nodes, one budget per address: %v", statuses)
	denied := float64(len(statuses) - allowed)

	// Per account: wrong passwords from many addresses over both nodes.
	for i := range failures {
		status, _ := try(i, fmt.Sprintf("127.0.4.%d", i+1), "alice", "wrong-password")
		require.Equal(t, http.StatusUnauthorized, status)
	}
	for i := range 2 {
		status, retry := try(i, fmt.Sprintf("127.0.4.%d", i+10), "ALICE", "password-alice")
		require.Equal(t, http.StatusTooManyRequests, status, "node %d: the account's budget is spent on both nodes", i%2)
		n, err := strconv.Atoi(retry)
		require.NoError(t, err)
		require.True(t, n >= 1 && n <= 20*60, "Retry-After %d within the window's refill", n)
	}
	status, _ := try(1, "127.0.4.20", "bob", "password-bob")
	require.Equal(t, http.StatusOK, status, "other accounts are not affected")
	require.Equal(t, denied+2, metricValue(t, nodes[0].reg, "roomnet_ratelimit_denied_total")+metricValue(t, nodes[1].reg, "roomnet_ratelimit_denied_total"))

	// Redis stops: each node keeps limiting, on its own budget.
	srv.Stop()
	for n := range nodes {
		var allowed int
		start := time.Now()
		for i := range perMinute + 4 {
			status, _ := try(n, "127.0.5.1", fmt.Sprintf("nobody%d", i), "wrong-password")
			if status != http.StatusTooManyRequests {
				allowed++
			}
		}
		require.GreaterOrEqual(t, allowed, perMinute, "node %d limits alone", n)
		require.LessOrEqual(t, allowed, perMinute+refills(start), "node %d limits alone", n)
		require.Less(t, allowed, perMinute+4, "node %d refused nothing", n)
		status, _ := try(n, fmt.Sprintf("127.0.5.%d", n+2), "bob", "password-bob")
		require.Equal(t, http.StatusOK, status, "node %d: logins work without Redis", n)
		require.False(t, nodes[n].lim.Shared())
		require.Positive(t, metricValue(t, nodes[n].reg, "roomnet_ratelimit_fallback_total"))
	}

	// Redis is back (empty): shared again, with no restart.
	srv.Restart()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			// Any request passes the per-address limit, which probes Redis.
			if resp, err := from("127.0.6.9").Get(n.url + "/api/v1/openapi.json"); err == nil {
				resp.Body.Close()
			}
		}
		return nodes[0].lim.Shared() && nodes[1].lim.Shared()
	}, 10*time.Second, 50*time.Millisecond)
	statuses = nil
	for i := range 2 * perMinute {
		status, _ := try(i, "127.0.6.1", fmt.Sprintf("nobody%d", i), "wrong-password")
		statuses = append(statuses, status)
	}
	require.Equal(t, []int{401, 401, 401, 401, 429, 429, 429, 429}, statuses, "one budget again")
}

// metricValue sums the counter name over its labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

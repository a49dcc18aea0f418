package api

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/roomnet"
)

// The API's rate limits. Each is a budget per key in the Limiter, and the
// keys name no node: nodes sharing a Limiter engine (Redis) share every
// budget, so N nodes do not give an attacker N budgets.
const (
	limitAPI     = "api"     // every route, per client address
	limitAuth    = "auth"    // login, register, session, password and invite joins, per client address
	limitAccount = "account" // wrong passwords, per account from every address
	limitVerify  = "verify"  // DERP admission (POST /verify), per client address
)

// rateLimits applies the API's limits through one Limiter.
type rateLimits struct {
	lim     limits.Limiter
	server  *server
	api     limits.Limit
	auth    limits.Limit
	account limits.Limit
	verify  limits.Limit
	denied  *prometheus.CounterVec
}

func newRateLimits(s *server, o Options) *rateLimits {
	lim := o.Limiter
	if lim == nil {
		lim = limits.NewMemory(limits.MemoryOptions{})
	}
	r := &rateLimits{lim: lim, server: s,
		api:     limits.PerSecond(o.RequestsPerSec, max(1, int(2*o.RequestsPerSec))),
		auth:    limits.PerWindow(o.AuthPerMinute, time.Minute),
		account: limits.PerWindow(o.LoginFailures, o.LoginFailureWindow),
		// A relay asks once per client connection; a relay that restarts
		// sees its clients come back at once, hence the deep bucket.
		verify: limits.PerSecond(o.VerifyPerSec, max(1, int(10*o.VerifyPerSec))),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomnet_ratelimit_denied_total", Help: "Requests refused by a rate limit (api, auth, account, verify).",
		}, []string{"limit"}),
	}
	o.Registry.MustRegister(r.denied)
	return r
}

// perAddress limits requests per client address (c.RealIP, which is the
// echo instance's IPExtractor).
func (r *rateLimits) perAddress(name string, l limits.Limit) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := r.take(c, name, name+":"+c.RealIP(), l, "too many requests; slow down"); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// take takes a token of key's bucket or answers 429 with Retry-After. A
// Limiter that fails lets the request through: failing closed would lock
// everyone out (the Redis engine falls back to memory before that).
func (r *rateLimits) take(c echo.Context, name, key string, l limits.Limit, msg string) error {
	ok, wait, err := r.lim.Allow(c.Request().Context(), key, l)
	if err != nil {
		r.server.log.Warn("rate limit unavailable: request allowed", "limit", name, "err", err)
		return nil
	}
	if ok {
		return nil
	}
	r.denied.WithLabelValues(name).Inc()
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	return &apiError{status: http.StatusTooManyRequests, code: roomnet.CodeRateLimited, msg: msg}
}

// reserveLogin takes a token of the account's wrong-password bucket before
// its password is checked, so that parallel guesses cannot overrun the
// limit; the caller calls refund unless the password was wrong. A user
// who types their password right is never counted, and an account is
// never refused for longer than the window after the last wrong password.
func (r *rateLimits) reserveLogin(c echo.Context, username string) (refund func(), err error) {
	key := accountKey(username)
	if err := r.take(c, limitAccount, key, r.account, "too many wrong passwords for this account; try again later"); err != nil {
		return nil, err
	}
	return func() {
		if err := r.lim.Refund(c.Request().Context(), key, r.account); err != nil {
			r.server.log.Warn("rate limit unavailable: refund lost", "limit", limitAccount, "err", err)
		}
	}, nil
}

// accountKey names username's bucket whatever its case; names longer than
// any valid one are hashed, so that a key's size stays bounded.
func accountKey(username string) string {
	u := strings.ToLower(username)
	if len(u) > 64 {
		sum := sha256.Sum256([]byte(u))
		u = "#" + hex.EncodeToString(sum[:])
	}
	return limitAccount + ":" + u
}

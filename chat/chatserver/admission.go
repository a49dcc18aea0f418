package chatserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/roomnet/roomnet/controlplane/limits"
)

// admission bounds chat connections: how many one user holds, how many
// one client address holds (sockets still in their auth window count),
// and how fast one address may open them. Limits below zero are off. The
// counts are this node's; the accept rate is a budget per address in a
// limits.Limiter, which nodes behind one proxy share (Redis) so that N
// nodes do not give an address N budgets.
type admission struct {
	perUser, perAddr int
	rate             limits.Limit // invalid (zero): the accept rate is not limited
	lim              limits.Limiter
	log              *slog.Logger

	mu    sync.Mutex
	addrs map[string]int // connections per address
	users map[uint64]int // connections per user
}

// acceptKey prefixes the accept budget's key of a client address in the
// Limiter (the API's budgets are "api:…", "auth:…").
const acceptKey = "chat_accept:"

func newAdmission(o Options, log *slog.Logger) *admission {
	a := &admission{
		perUser: o.MaxConnsPerUser, perAddr: o.MaxConnsPerAddr, lim: o.AcceptLimiter, log: log,
		addrs: map[string]int{}, users: map[uint64]int{},
	}
	if o.AcceptPerSec > 0 && o.AcceptBurst > 0 {
		a.rate = limits.PerSecond(o.AcceptPerSec, o.AcceptBurst)
	}
	if a.lim == nil {
		a.lim = limits.NewMemory(limits.MemoryOptions{})
	}
	return a
}

// refusal says why a connection was not admitted.
type refusal string

const (
	refusedRate refusal = "opening connections too fast"
	refusedAddr refusal = "too many connections from this address"
	refusedUser refusal = "too many connections for this user"
)

// addr admits one more connection from addr; on success the caller must
// call releaseAddr once it ends. A Limiter that fails lets the
// connection through: failing closed would lock every client out (the
// shared engine falls back to memory before that).
func (a *admission) addr(ctx context.Context, addr string) refusal {
	if a.rate.Every > 0 {
		ok, _, err := a.lim.Allow(ctx, acceptKey+addr, a.rate)
		if err != nil {
			a.log.Warn("chat accept limit unavailable: connection allowed", "err", err)
		} else if !ok {
			return refusedRate
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perAddr > 0 && a.addrs[addr] >= a.perAddr {
		return refusedAddr
	}
	a.addrs[addr]++
	return ""
}

func (a *admission) releaseAddr(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.addrs[addr]--; a.addrs[addr] <= 0 {
		delete(a.addrs, addr)
	}
}

// user admits one more connection of user id; on success the caller
// must call releaseUser once it ends.
func (a *admission) user(id uint64) refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perUser > 0 && a.users[id] >= a.perUser {
		return refusedUser
	}
	a.users[id]++
	return ""
}

func (a *admission) releaseUser(id uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users[id]--; a.users[id] <= 0 {
		delete(a.users, id)
	}
}

// remoteHost is the default ClientIP: the host of the peer's address.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

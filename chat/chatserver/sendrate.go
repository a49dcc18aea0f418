package chatserver

import (
	"sync"

	"golang.org/x/time/rate"
)

// sendRates holds each user's send budget on this node, one token bucket
// per user shared by all of the user's connections here.
type sendRates struct {
	every rate.Limit
	burst int

	mu    sync.Mutex
	users map[uint64]*rate.Limiter
}

func newSendRates(perSec float64, burst int) *sendRates {
	return &sendRates{every: rate.Limit(perSec), burst: burst, users: map[uint64]*rate.Limiter{}}
}

// of returns user id's bucket.
func (r *sendRates) of(id uint64) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.users[id]
	if !ok {
		l = rate.NewLimiter(r.every, r.burst)
		r.users[id] = l
	}
	return l
}

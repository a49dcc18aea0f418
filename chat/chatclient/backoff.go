package chatclient

import (
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter: attempt n (from 1) waits
// min(Initial·Factor^(n-1), Max), scaled by a random factor in
// [1-Jitter, 1+Jitter].
type Backoff struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
	Jitter  float64 // 0..1
}

// Delay returns the wait before attempt n.
func (b Backoff) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(b.Initial)
	for i := 1; i < n && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	return time.Duration(d)
}

package service

import (
	"sync"
	"time"

	"tailscale.com/types/key"
)

// Admission answers for unknown node keys are kept briefly, so that a
// relay asking again for a key no shard knows (a stranger retrying, a
// flood of one key) costs a map lookup instead of a question to every
// shard. Known keys are always asked afresh: a node that was just cut
// must not be admitted from memory. A key that registers after it was
// refused is admitted once its entry expires (admitNegativeTTL); relays
// refuse, and clients retry, in the meantime.
const (
	admitNegativeTTL = time.Second
	admitCacheMax    = 10000 // entries; beyond it, new answers are not kept
)

// admitCache remembers the keys no shard knew a moment ago.
type admitCache struct {
	mu      sync.Mutex
	unknown map[key.NodePublic]time.Time // expiry
}

// refused reports whether k was unknown less than admitNegativeTTL ago.
func (c *admitCache) refused(k key.NodePublic, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.unknown[k]
	if ok && now.After(exp) {
		delete(c.unknown, k)
		return false
	}
	return ok
}

// refuse remembers that no shard knew k at now.
func (c *admitCache) refuse(k key.NodePublic, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unknown == nil {
		c.unknown = map[key.NodePublic]time.Time{}
	}
	if len(c.unknown) >= admitCacheMax {
		for k, exp := range c.unknown {
			if now.After(exp) {
				delete(c.unknown, k)
			}
		}
		if len(c.unknown) >= admitCacheMax {
			return
		}
	}
	c.unknown[k] = now.Add(admitNegativeTTL)
}

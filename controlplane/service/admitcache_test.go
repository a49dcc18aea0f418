package service

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/types/key"

	"github.com/roomnet/roomnet/controlplane/headscale"
)

// A key no shard knows is refused from memory for a second: asking again
// costs the shards nothing. Known keys are always asked afresh; a refusal
// that not every shard gave is not remembered.
func TestAdmitNodeRemembersUnknownKeysBriefly(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	f, hs := shardFixture(t, []string{"a", "b"}, func(o *Options) { o.Now = now })
	ctx := context.Background()
	src := netip.MustParseAddr("127.0.0.1")
	calls := func() (a, b int) {
		hs["a"].mu.Lock()
		a = hs["a"].calls
		hs["a"].mu.Unlock()
		hs["b"].mu.Lock()
		b = hs["b"].calls
		hs["b"].mu.Unlock()
		return a, b
	}
	admit := func(k key.NodePublic) bool {
		t.Helper()
		ok, err := f.svc.AdmitNode(ctx, k, src)
		require.NoError(t, err)
		return ok
	}
	addKey := func(h *hsDouble, k key.NodePublic) {
		h.mu.Lock()
		defer h.mu.Unlock()
		id := h.id()
		h.nodes[id] = headscale.Node{ID: id, Name: "late", NodeKey: k.String()}
	}

	stranger := key.NewNode().Public()
	a0, b0 := calls()
	for range 50 {
		require.False(t, admit(stranger))
	}
	a1, b1 := calls()
	require.Equal(t, []int{1, 1}, []int{a1 - a0, b1 - b0}, "each shard asked once for 50 requests")

	known := hs["a"].addNodes(1)
	for range 3 {
		require.True(t, admit(known))
	}
	a2, _ := calls()
	require.Equal(t, 3, a2-a1, "a known key is asked every time")

	// A key that registers after its refusal: refused from memory until
	// the entry expires, then admitted.
	addKey(hs["b"], stranger)
	require.False(t, admit(stranger))
	advance(admitNegativeTTL + time.Millisecond)
	require.True(t, admit(stranger))

	// A refusal while a shard does not answer is not remembered.
	late := key.NewNode().Public()
	hs["b"].setDown(true)
	require.False(t, admit(late))
	hs["b"].setDown(false)
	addKey(hs["b"], late)
	require.True(t, admit(late), "b did not answer the first time: it is asked again")
}

package roomnetd_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnettest"
)

// Two roomnetd nodes with redis.url share chat's accept budget per client
// address (20 a second, burst 40), as they share the API's limits: one
// address opening WebSockets on both nodes as fast as it can is admitted
// at most 40 + 20/s over the whole run, not that on each node. Refusals
// are chat's 429 (the API's limits do not cover /ws).
func TestNodesShareTheChatAcceptBudget(t *testing.T) {
	shared, _ := sharedStores(t)
	nodes := []*roomnettest.Harness{roomnettest.New(t, shared), roomnettest.New(t, shared)}
	const dials, perSec, burst = 120, 20, 40
	accepted, refused := make([]int, 2), make([]int, 2)
	start := time.Now()
	for i := range dials {
		n := i % 2
		ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(nodes[n].URL, "http")+"/ws", nil)
		if err == nil {
			ws.Close()
			accepted[n]++
			continue
		}
		require.NotNil(t, resp, "dial %d: %v", i, err)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "dial %d", i)
		body, _ := io.ReadAll(resp.Body)
		require.Contains(t, string(body), "opening connections too fast", "dial %d: chat's accept-rate refusal", i)
		refused[n]++
	}
	elapsed := time.Since(start)
	// GCRA admits at most burst + rate × elapsed (one more for rounding);
	// separate budgets would admit twice that while elapsed stays short.
	most := burst + int(perSec*elapsed.Seconds()) + 1
	t.Logf("%d dials in %v: accepted %v, refused %v; a shared budget admits at most %d", dials, elapsed.Round(time.Millisecond), accepted, refused, most)
	require.LessOrEqual(t, accepted[0]+accepted[1], most, "admitted across both nodes")
	require.Positive(t, accepted[0], "node a admitted none")
	require.Positive(t, accepted[1], "node b admitted none")
}

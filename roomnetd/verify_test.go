package roomnetd_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/roomnet/roomnet/roomnettest"
)

// postVerify asks base's /verify for k and returns the status and the
// Retry-After header.
func postVerify(t *testing.T, base string, k key.NodePublic) (int, string) {
	t.Helper()
	body, _ := json.Marshal(tailcfg.DERPAdmitClientRequest{NodePublic: k, Source: netip.MustParseAddr("127.0.0.1")})
	resp, err := http.Post(base+"/verify", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// POST /verify is public: it is limited per address, with the limiter the
// nodes share, so that a second node does not give an address a second
// budget; the rest of the API keeps its own budget.
func TestVerifyIsLimitedPerAddressAcrossNodes(t *testing.T) {
	stores, _ := sharedStores(t)
	shared := func(s *roomnettest.Settings) {
		stores(s)
		s.Server.VerifyPerSec = 0.1 // a bucket of one request, refilled every 10 s
	}
	a := roomnettest.New(t, shared)
	b := roomnettest.New(t, shared)
	stranger := key.NewNode().Public()

	status, _ := postVerify(t, a.URL, stranger)
	require.Equal(t, http.StatusOK, status)
	status, retry := postVerify(t, b.URL, stranger)
	require.Equal(t, http.StatusTooManyRequests, status, "node b shares node a's budget for this address")
	require.NotEmpty(t, retry)
	status, _ = postVerify(t, a.URL, stranger)
	require.Equal(t, http.StatusTooManyRequests, status)

	_, err := a.Admin.Me(roomnettest.Context(t, 10*time.Second))
	require.NoError(t, err, "the API's own budget is untouched")
}

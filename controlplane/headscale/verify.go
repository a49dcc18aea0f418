package headscale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Verifier asks a Headscale's POST /verify whether it knows a node key:
// the question DERP relays ask before they relay for a node.
type Verifier struct {
	URL    string       // http(s)://<headscale>/verify
	Client *http.Client // nil: http.DefaultClient
}

// Admit reports whether Headscale knows nodeKey; an error means it did
// not answer.
func (v Verifier) Admit(ctx context.Context, nodeKey key.NodePublic, source netip.Addr) (bool, error) {
	body, err := json.Marshal(tailcfg.DERPAdmitClientRequest{NodePublic: nodeKey, Source: source})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("asking headscale's /verify: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := v.Client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return false, fmt.Errorf("asking headscale's /verify: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false, fmt.Errorf("asking headscale's /verify: %s", res.Status)
	}
	var ans tailcfg.DERPAdmitClientResponse
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<10)).Decode(&ans); err != nil {
		return false, fmt.Errorf("reading headscale's /verify answer: %w", err)
	}
	return ans.Allow, nil
}

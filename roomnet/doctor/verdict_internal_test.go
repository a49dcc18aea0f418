package doctor

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"tailscale.com/net/stun"
)

// The port-mapping verdict: a router that maps ports is ok and names the
// protocols; one that does not is a warning with advice behind a hard or
// unknown NAT and fine behind an easy one; without a private gateway, or
// with a public address, there is nothing to ask. (The real probe against
// miniupnpd is tested in roomnettest/netlab.)
func TestPortMapVerdict(t *testing.T) {
	gw := netip.MustParseAddr("192.168.1.1")
	hard := Check{Name: "nat", Status: Warn, Summary: "hard NAT: …"}
	easy := Check{Name: "nat", Status: OK, Summary: "easy NAT: …"}
	none := Check{Name: "nat", Status: OK, Summary: "no NAT: …"}
	for _, tc := range []struct {
		name   string
		res    PortMapResult
		err    error
		nat    Check
		status string
		words  string
	}{
		{"upnp and pmp", PortMapResult{Gateway: gw, UPnP: true, PMP: true}, nil, hard, OK, "maps ports (UPnP, NAT-PMP)"},
		{"nothing, hard NAT", PortMapResult{Gateway: gw}, nil, hard, Warn, "maps no ports"},
		{"nothing, easy NAT", PortMapResult{Gateway: gw}, nil, easy, OK, "not needed"},
		{"no private gateway", PortMapResult{}, nil, hard, Skip, "no home router"},
		{"public address", PortMapResult{Gateway: gw, PCP: true}, nil, none, Skip, "public address"},
		{"probe error", PortMapResult{Gateway: gw}, errors.New("no socket"), hard, Skip, "no socket"},
	} {
		c := portMapVerdict(tc.res, tc.err, tc.nat)
		if c.Status != tc.status || !strings.Contains(c.Summary, tc.words) || (c.Status == Warn) != (c.Advice != "") {
			t.Errorf("%s: %+v, want %s with %q (and advice exactly when warn)", tc.name, c, tc.status, tc.words)
		}
	}
}

// A padded STUN request is exactly the size asked for and is what
// tailscale's STUN server accepts.
func TestPaddedRequest(t *testing.T) {
	for _, size := range mtuSizes {
		tx := stun.NewTxID()
		b := paddedRequest(tx, size-28)
		if len(b) != size-28 {
			t.Fatalf("size %d: %d bytes, want %d", size, len(b), size-28)
		}
		got, err := stun.ParseBindingRequest(b)
		if err != nil || got != tx {
			t.Fatalf("size %d: %v (tx %v, want %v)", size, err, got, tx)
		}
	}
}

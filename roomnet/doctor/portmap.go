package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"tailscale.com/net/netmon"
	"tailscale.com/net/portmapper"
	"tailscale.com/util/eventbus"
)

// PortMapResult is what the LAN's gateway said about port mapping.
type PortMapResult struct {
	Gateway        netip.Addr // invalid: no gateway on a private network
	UPnP, PMP, PCP bool
}

// probePortMap asks the default gateway, with tailscale's port mapper
// (the one the room's node uses), which port-mapping protocols it speaks.
// It sends NAT-PMP and PCP to the gateway's port 5351 and SSDP to the
// gateway and the LAN's multicast group, and creates no mapping; it asks
// nothing when the gateway or this machine has no private address.
func probePortMap(ctx context.Context) (PortMapResult, error) {
	gw, _, ok := netmon.LikelyHomeRouterIP()
	if !ok {
		return PortMapResult{}, nil
	}
	bus := eventbus.New()
	defer bus.Close()
	pm := portmapper.NewClient(portmapper.Config{EventBus: bus, NetMon: netmon.NewStatic()})
	defer pm.Close()
	res, err := pm.Probe(ctx)
	if err != nil {
		return PortMapResult{Gateway: gw}, err
	}
	return PortMapResult{Gateway: gw, UPnP: res.UPnP, PMP: res.PMP, PCP: res.PCP}, nil
}

// portMapVerdict reads the probe with what the NAT check found (the nat
// check's status: ok for no or easy NAT, warn for a hard one, skip).
func portMapVerdict(r PortMapResult, err error, nat Check) Check {
	c := Check{Name: "portmap"}
	if natIsNone(nat) {
		c.Status, c.Summary = Skip, "not needed: this machine has a public address"
		return c
	}
	if err != nil {
		c.Status, c.Summary = Skip, "could not ask the router: "+err.Error()
		return c
	}
	if !r.Gateway.IsValid() {
		c.Status, c.Summary = Skip, "no home router to ask: this machine's gateway is not on a private network"
		return c
	}
	var protos []string
	for _, p := range []struct {
		on   bool
		name string
	}{{r.UPnP, "UPnP"}, {r.PMP, "NAT-PMP"}, {r.PCP, "PCP"}} {
		if p.on {
			protos = append(protos, p.name)
		}
	}
	c.Details = map[string]any{"gateway": r.Gateway.String(), "upnp": r.UPnP, "pmp": r.PMP, "pcp": r.PCP}
	if len(protos) > 0 {
		c.Status, c.Summary = OK, fmt.Sprintf("the router (%s) maps ports (%s): rooms ask it for one, so other players can connect directly even through a hard NAT", r.Gateway, strings.Join(protos, ", "))
		return c
	}
	if nat.Status == OK {
		c.Status, c.Summary = OK, fmt.Sprintf("the router (%s) maps no ports (no UPnP, NAT-PMP or PCP answer); behind an easy NAT that is not needed", r.Gateway)
		return c
	}
	c.Status, c.Summary = Warn, fmt.Sprintf("the router (%s) maps no ports (no UPnP, NAT-PMP or PCP answer): behind a hard or unknown NAT, rooms with other such players go through a relay", r.Gateway)
	c.Advice = "turn on UPnP or NAT-PMP in the router's settings; a carrier-grade NAT (the router's own address is not public) needs the provider's help instead"
	return c
}

func natIsNone(nat Check) bool {
	return nat.Status == OK && strings.HasPrefix(nat.Summary, "no NAT")
}

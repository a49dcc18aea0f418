package service

import (
	"time"

	"github.com/roomnet/roomnet/controlplane/headscale"
)

// RelayObserver is what the control plane can see of a DERP relay it runs:
// which nodes are connected to it and which pairs it carried packets
// between. Keys are Headscale's "nodekey:…" form. derp/relay.Server
// implements it.
type RelayObserver interface {
	NodeConnected(nodeKey string) bool
	RelayedBetween(a, b string, since time.Time) bool
}

type relayObserver struct {
	region string
	obs    RelayObserver
}

// SetRelayObserver lets Members infer, for members whose client sends no
// path report (the official Tailscale client), which pairs go through the
// relay named region and which do not. Without one, such members have
// no paths.
func (s *Service) SetRelayObserver(region string, o RelayObserver) {
	if o == nil {
		s.relayObs.Store(nil)
		return
	}
	s.relayObs.Store(&relayObserver{region: region, obs: o})
}

// relayedWindow is how recent a relayed packet must be for a pair to count
// as relayed now; the same span a client's report stands.
const relayedWindow = pathTTL

// serverPaths infers the links of every member without a fresh client
// report: to each other member with an online node, "relayed" when the
// relay carried a packet between any of their nodes within relayedWindow;
// otherwise direct (inferred) when both have a node connected to the
// relay (so relayed packets between them would pass through it), and no
// link when one of them is not (it may be relayed by another region). A
// member with no online node gets none.
func (s *Service) serverPaths(out []MemberView) {
	ro := s.relayObs.Load()
	if ro == nil {
		return
	}
	now := s.now()
	since := now.Add(-relayedWindow)
	online := func(m MemberView) []headscale.Node {
		var ns []headscale.Node
		for _, n := range m.Nodes {
			if n.Online && n.NodeKey != "" {
				ns = append(ns, n)
			}
		}
		return ns
	}
	connected := func(ns []headscale.Node) bool {
		for _, n := range ns {
			if ro.obs.NodeConnected(n.NodeKey) {
				return true
			}
		}
		return false
	}
	for i := range out {
		if out[i].Paths != nil {
			continue
		}
		mine := online(out[i])
		if len(mine) == 0 {
			continue
		}
		r := &PathReport{At: now, Source: SourceServer, Links: []Link{}}
		for j := range out {
			if j == i {
				continue
			}
			theirs := online(out[j])
			if len(theirs) == 0 {
				continue
			}
			l := Link{Peer: out[j].User.Username}
			if len(theirs[0].IPs) > 0 {
				l.IP = theirs[0].IPs[0].String()
			}
			relayed := false
			for _, a := range mine {
				for _, b := range theirs {
					if ro.obs.RelayedBetween(a.NodeKey, b.NodeKey, since) {
						relayed = true
					}
				}
			}
			switch {
			case relayed:
				l.Relay = ro.region
			case connected(mine) && connected(theirs):
				// Both homed on this relay: a relayed packet between
				// them would have passed here.
				l.Direct, l.Inferred = true, true
			default:
				continue // relayed elsewhere, if at all: unknown
			}
			r.Links = append(r.Links, l)
		}
		out[i].Paths = r
	}
}

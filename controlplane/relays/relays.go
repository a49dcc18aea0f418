// Package relays keeps the DERP map: the embedded relay plus every relay
// that registered with a heartbeat and has not gone quiet. On every change
// it hands the map for Headscale to a callback (roomnetd writes it where
// Headscale reads it, so nodes learn of new and dead relays without a
// restart).
//
// Two maps: Map, the whole one (the API serves it: launchers and
// `roomnet doctor` read every relay and STUN-only node), and the one
// Headscale serves to nodes, with one DERP node per region. Headscale
// v0.29.3 re-reads its map file every derp.map_refresh and shuffles each
// region's nodes with a random stream that goes on from one read to the
// next; tailscale's magicsock takes any change of a region's definition,
// order included, as a redefinition and drops its connection to that
// region ("derp-region-redefined"). A region of two nodes would make
// every node's DERP connection to it drop every few refreshes. One node
// per region keeps the map a node sees the same until a relay joins or
// leaves.
package relays

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"

	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/derp"
	"github.com/roomnet/roomnet/roomnet"
)

// Registry tracks relays. Safe for concurrent use.
type Registry struct {
	ttl      time.Duration
	onChange func(*tailcfg.DERPMap) error
	now      func() time.Time

	mu     sync.Mutex
	static []roomnet.Relay
	live   map[string]roomnet.Relay // by node name
	// primary is, per region, the node the control map names: kept while
	// it stays in the map, so a relay joining the region changes nothing.
	primary map[int]string
	share   func(roomnet.RelayHeartbeat)

	pubMu     sync.Mutex       // one publish at a time
	published *tailcfg.DERPMap // the last map onChange took
	local     func() roomnet.RelayStats
	stop      chan struct{}
	done      chan struct{}
}

// New returns a registry; static relays (the embedded one) never expire.
// A relay silent for ttl leaves the map.
func New(static []roomnet.Relay, ttl time.Duration, onChange func(*tailcfg.DERPMap) error) (*Registry, error) {
	r := &Registry{ttl: ttl, onChange: onChange, now: time.Now, static: static, live: map[string]roomnet.Relay{},
		primary: map[int]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	if err := r.publish(); err != nil && len(static) > 0 {
		return nil, err
	}
	go r.sweep()
	return r, nil
}

// Validate checks a heartbeat.
func Validate(hb roomnet.RelayHeartbeat) error {
	switch {
	case hb.RegionID < 1 || hb.RegionID > 65535:
		return errors.New("region_id: 1..65535")
	case hb.RegionCode == "" || len(hb.RegionCode) > 32 || len(hb.RegionName) > 64:
		return errors.New("region_code: 1..32 characters; region_name: at most 64")
	case hb.Node.Name == "" || len(hb.Node.Name) > 64:
		return errors.New("node.name: 1..64 characters")
	case hb.Node.HostName == "" || len(hb.Node.HostName) > 253:
		return errors.New("node.hostname: required")
	case hb.Node.DERPPort < 1 || hb.Node.DERPPort > 65535 || hb.Node.STUNPort < -1 || hb.Node.STUNPort > 65535:
		return errors.New("node ports out of range")
	}
	return nil
}

// SetSharer makes Heartbeat hand every heartbeat it accepts to share:
// in a cluster, to the other nodes, which record it with Remote. Set it
// before heartbeats arrive.
func (r *Registry) SetSharer(share func(roomnet.RelayHeartbeat)) {
	r.mu.Lock()
	r.share = share
	r.mu.Unlock()
}

// Heartbeat records that a relay is alive (the relay sent it to this
// node) and shares it.
func (r *Registry) Heartbeat(hb roomnet.RelayHeartbeat) error {
	if err := r.record(hb); err != nil {
		return err
	}
	r.mu.Lock()
	share := r.share
	r.mu.Unlock()
	if share != nil {
		share(hb)
	}
	return nil
}

// Remote records a heartbeat another node of the cluster received, so
// that every node's map and list hold every relay whichever node the
// load balancer sent its heartbeats to.
func (r *Registry) Remote(hb roomnet.RelayHeartbeat) error { return r.record(hb) }

func (r *Registry) record(hb roomnet.RelayHeartbeat) error {
	if err := Validate(hb); err != nil {
		return err
	}
	r.mu.Lock()
	for _, s := range r.static {
		if s.Node.Name == hb.Node.Name {
			r.mu.Unlock()
			return fmt.Errorf("node name %q is taken by the embedded relay", hb.Node.Name)
		}
	}
	old, known := r.live[hb.Node.Name]
	now := r.now()
	next := roomnet.Relay{RelayHeartbeat: hb, LastSeen: now, Healthy: true}
	if known && old.Stats != nil && hb.Stats != nil {
		if dt := now.Sub(old.LastSeen).Seconds(); dt > 0 {
			d := (hb.Stats.BytesReceived - old.Stats.BytesReceived) + (hb.Stats.BytesSent - old.Stats.BytesSent)
			next.BytesPerSec = max(d, 0) / dt
		}
	}
	r.live[hb.Node.Name] = next
	// Only what goes into the DERP map counts as a change, not counters.
	changed := !known || old.RegionID != hb.RegionID || old.RegionCode != hb.RegionCode ||
		old.RegionName != hb.RegionName || old.Node != hb.Node
	r.mu.Unlock()
	if changed {
		return r.publish()
	}
	return nil
}

// SetLocalStats gives the counters of the static (embedded) relay.
func (r *Registry) SetLocalStats(f func() roomnet.RelayStats) {
	r.mu.Lock()
	r.local = f
	r.mu.Unlock()
}

// List returns every relay in the map. A registered relay is healthy
// while its heartbeats arrive on time (within half the TTL).
func (r *Registry) List() []roomnet.Relay {
	r.mu.Lock()
	local := r.local
	out := append([]roomnet.Relay(nil), r.static...)
	now := r.now()
	for _, l := range r.live {
		l.Healthy = now.Sub(l.LastSeen) <= r.ttl/2
		out = append(out, l)
	}
	r.mu.Unlock()
	for i := range out {
		if out[i].Embedded {
			out[i].Healthy = true
			if local != nil {
				st := local()
				out[i].Stats = &st
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].RegionID != out[j].RegionID {
			return out[i].RegionID < out[j].RegionID
		}
		return out[i].Node.Name < out[j].Node.Name
	})
	return out
}

// Map builds the current DERP map.
func (r *Registry) Map() *tailcfg.DERPMap {
	regions := map[int]*derp.Region{}
	var ids []int
	for _, rl := range r.List() {
		reg, ok := regions[rl.RegionID]
		if !ok {
			reg = &derp.Region{ID: rl.RegionID, Code: rl.RegionCode, Name: rl.RegionName}
			regions[rl.RegionID] = reg
			ids = append(ids, rl.RegionID)
		}
		reg.Nodes = append(reg.Nodes, &tailcfg.DERPNode{
			Name: rl.Node.Name, RegionID: rl.RegionID, HostName: rl.Node.HostName, IPv4: rl.Node.IPv4, IPv6: rl.Node.IPv6,
			DERPPort: rl.Node.DERPPort, STUNPort: rl.Node.STUNPort, InsecureForTests: rl.Node.Insecure, STUNOnly: rl.Node.STUNOnly,
		})
	}
	out := make([]derp.Region, 0, len(ids))
	for _, id := range ids {
		out = append(out, *regions[id])
	}
	return derp.Map(out)
}

// ControlMap is the map for Headscale (see the package comment): per
// region one DERP node, the one named before while it is healthy (its
// heartbeats on time), else the first healthy one by name, else the one
// named before or the first; no STUN-only node. A region with no DERP
// node is left out.
func (r *Registry) ControlMap() *tailcfg.DERPMap {
	healthy := map[string]bool{}
	for _, rl := range r.List() {
		healthy[rl.Node.Name] = rl.Healthy
	}
	m := r.Map()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, reg := range m.Regions {
		var first, firstHealthy, current *tailcfg.DERPNode
		for _, n := range reg.Nodes {
			if n.STUNOnly {
				continue
			}
			if first == nil {
				first = n
			}
			if firstHealthy == nil && healthy[n.Name] {
				firstHealthy = n
			}
			if n.Name == r.primary[id] {
				current = n
			}
		}
		pick := first
		switch {
		case current != nil && healthy[current.Name]:
			pick = current
		case firstHealthy != nil:
			pick = firstHealthy
		case current != nil:
			pick = current
		}
		if pick == nil {
			delete(m.Regions, id)
			continue
		}
		r.primary[id] = pick.Name
		reg.Nodes = []*tailcfg.DERPNode{pick}
	}
	for id := range r.primary {
		if m.Regions[id] == nil {
			delete(r.primary, id)
		}
	}
	return m
}

// publish hands the control map to onChange when it differs from the
// last one handed over; one at a time, so that an older map is never
// written after a newer one.
func (r *Registry) publish() error {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	m := r.ControlMap()
	if len(m.Regions) == 0 {
		return errors.New("relays: no relay to put in the DERP map")
	}
	if r.published != nil && reflect.DeepEqual(m, r.published) {
		return nil
	}
	if err := r.onChange(m); err != nil {
		return err
	}
	r.published = m
	return nil
}

// sweep drops relays silent for the TTL and, every quarter TTL, hands
// over the control map when it changed (a region's node missing its
// heartbeats passes the region to a healthy one).
func (r *Registry) sweep() {
	defer close(r.done)
	t := time.NewTicker(r.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		for name, l := range r.live {
			if r.now().Sub(l.LastSeen) > r.ttl {
				delete(r.live, name)
			}
		}
		r.mu.Unlock()
		_ = r.publish()
	}
}

// Close stops the sweeper.
func (r *Registry) Close() {
	close(r.stop)
	<-r.done
}

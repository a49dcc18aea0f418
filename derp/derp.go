// Package derp holds what roomnet's DERP relays and the control plane share:
// the description of a relay node and the DERP map built from them. The
// relay itself is derp/relay; it reuses tailscale.com/derp, never a fork.
package derp

import (
	"fmt"
	"os"
	"sort"

	"gopkg.in/yaml.v3"
	"tailscale.com/tailcfg"
)

// Region groups relay nodes that mesh with each other.
type Region struct {
	ID    int
	Code  string
	Name  string
	Nodes []*tailcfg.DERPNode
}

// Map builds a DERP map from regions. It never includes Tailscale's
// default regions: the map is ours alone.
func Map(regions []Region) *tailcfg.DERPMap {
	m := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}, OmitDefaultRegions: true}
	sort.Slice(regions, func(i, j int) bool { return regions[i].ID < regions[j].ID })
	for _, r := range regions {
		m.Regions[r.ID] = &tailcfg.DERPRegion{
			RegionID:   r.ID,
			RegionCode: r.Code,
			RegionName: r.Name,
			Nodes:      r.Nodes,
		}
	}
	return m
}

// WriteMapFile writes m in the YAML form Headscale's derp.paths reads,
// atomically (temp file and rename), so Headscale never reads half a map.
func WriteMapFile(path string, m *tailcfg.DERPMap) error {
	if len(m.Regions) == 0 {
		return fmt.Errorf("writing DERP map: no regions (Headscale refuses an empty map)")
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding DERP map: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing DERP map: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing DERP map: %w", err)
	}
	return nil
}

package relay

import (
	"context"
	"time"

	"github.com/roomnet/roomnet/roomnet"
)

// Heartbeat is what Register needs to describe this relay.
type Heartbeat struct {
	RegionID   int
	RegionCode string
	RegionName string
	NodeName   string
}

// Register heartbeats this relay to the control plane every interval
// until ctx ends, so that it stays in the DERP map; the control plane
// drops it when the heartbeats stop. client carries the relay token.
func (s *Server) Register(ctx context.Context, client *roomnet.Client, hb Heartbeat, interval time.Duration) {
	n := s.Node(hb.RegionID, hb.NodeName)
	msg := roomnet.RelayHeartbeat{
		RegionID: hb.RegionID, RegionCode: hb.RegionCode, RegionName: hb.RegionName,
		Node: roomnet.RelayNode{Name: n.Name, HostName: n.HostName, IPv4: n.IPv4, IPv6: n.IPv6,
			DERPPort: n.DERPPort, STUNPort: n.STUNPort, Insecure: n.InsecureForTests},
	}
	failing := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st := s.Stats()
		msg.Stats = &st
		cctx, cancel := context.WithTimeout(ctx, interval)
		err := client.RelayHeartbeat(cctx, msg)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.log.Warn("registering with the control plane", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("registered with the control plane again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

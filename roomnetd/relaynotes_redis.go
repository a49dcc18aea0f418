package roomnetd

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/roomnet/roomnet/controlplane/relays"
	"github.com/roomnet/roomnet/roomnet"
)

// relayNotesChannel is the Redis channel on which each node passes on the
// relay heartbeats it received.
const relayNotesChannel = "roomnet:cp:relays"

// relayNote is one heartbeat as passed on; node names the node that
// received it, which does not record it twice.
type relayNote struct {
	Node      string                 `json:"node"`
	Heartbeat roomnet.RelayHeartbeat `json:"heartbeat"`
}

// relayNotes gives every node every relay: a load balancer sends each
// relay's heartbeats to one node or another, and without them a node's
// map and list (GET /api/v1/derpmap, /relays) would hold only the relays
// that happened to reach it. At most once is enough: relays heartbeat
// every few seconds, and one lost note only ages a relay by one beat.
type relayNotes struct {
	ch  *channel
	log *slog.Logger
}

// startRelayNotes subscribes reg to the other nodes' heartbeats and makes
// it pass on its own; nil without Redis (one node hears every relay).
func startRelayNotes(rdb redis.UniversalClient, reg *relays.Registry, log *slog.Logger) *relayNotes {
	if rdb == nil || reg == nil {
		return nil
	}
	n := &relayNotes{ch: openChannel(rdb, relayNotesChannel), log: log}
	n.ch.listen(func(_ context.Context, payload string) {
		var note relayNote
		if err := json.Unmarshal([]byte(payload), &note); err != nil || note.Node == n.ch.node {
			return
		}
		if err := reg.Remote(note.Heartbeat); err != nil {
			n.log.Warn("a relay heartbeat from another node was refused", "relay", note.Heartbeat.Node.Name, "err", err)
		}
	})
	reg.SetSharer(n.share)
	return n
}

// share publishes one heartbeat; a failure is logged and the relay's next
// heartbeat tries again.
func (n *relayNotes) share(hb roomnet.RelayHeartbeat) {
	b, err := json.Marshal(relayNote{Node: n.ch.node, Heartbeat: hb})
	if err != nil {
		return
	}
	if err := n.ch.publish(b); err != nil {
		n.log.Warn("a relay heartbeat was not passed on to the other nodes", "relay", hb.Node.Name, "err", err)
	}
}

// close stops listening; before the Redis client closes.
func (n *relayNotes) close() {
	if n != nil {
		n.ch.close()
	}
}

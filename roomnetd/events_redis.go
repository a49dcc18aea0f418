package roomnetd

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/events"
)

// eventsChannel is the Redis channel the control plane's events travel
// on between nodes.
const eventsChannel = "roomnet:cp:events"

// eventRelay carries the control plane's events between nodes through
// Redis pub/sub, so that every node's event hub (the admin panel's live
// view; the event streams a sign-out or a ban ends) sees the events of
// every node. Chat learns membership through its own bus (topic ctl);
// this is only for the hub. At-most-once, like the bus: the admin view
// re-reads its lists from the database on every event and on reconnect.
type eventRelay struct {
	ch      *channel
	log     *slog.Logger
	out     chan []byte
	dropped atomic.Int64
}

// wireEvent is an event on the channel, with the node that published it
// (which skips its own copy: its hub had it already).
type wireEvent struct {
	Node  string   `json:"node"`
	Event cp.Event `json:"event"`
}

// startEventRelay subscribes to the channel; nil without Redis.
func startEventRelay(rdb redis.UniversalClient, hub *events.Hub, log *slog.Logger) *eventRelay {
	if rdb == nil {
		return nil
	}
	r := &eventRelay{ch: openChannel(rdb, eventsChannel), log: log, out: make(chan []byte, 1024)}
	r.ch.listen(func(ctx context.Context, payload string) {
		var w wireEvent
		if json.Unmarshal([]byte(payload), &w) != nil || w.Node == r.ch.node {
			return
		}
		hub.Publish(ctx, w.Event)
	})
	r.ch.goBackground(func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-r.out:
				if err := r.ch.publish(b); err != nil && ctx.Err() == nil {
					r.dropped.Add(1)
					log.Debug("an event for the other nodes' live views was not published", "err", err)
				}
			}
		}
	})
	return r
}

// publish queues events for the other nodes without waiting for Redis
// (the caller holds a room's lock); a full queue drops, counted.
func (r *eventRelay) publish(evs ...cp.Event) {
	if r == nil {
		return
	}
	for _, e := range evs {
		b, err := json.Marshal(wireEvent{Node: r.ch.node, Event: e})
		if err != nil {
			continue
		}
		select {
		case r.out <- b:
		default:
			r.dropped.Add(1)
		}
	}
}

// close stops relaying; before the Redis client closes.
func (r *eventRelay) close() {
	if r != nil {
		r.ch.close()
	}
}

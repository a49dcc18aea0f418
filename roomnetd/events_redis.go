package roomnetd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
	rdb     redis.UniversalClient
	node    string
	hub     *events.Hub
	log     *slog.Logger
	out     chan []byte
	dropped atomic.Int64
	cancel  context.CancelFunc
	ps      *redis.PubSub
	wg      sync.WaitGroup
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
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	ctx, cancel := context.WithCancel(context.Background())
	r := &eventRelay{rdb: rdb, node: hex.EncodeToString(b), hub: hub, log: log, out: make(chan []byte, 1024), cancel: cancel}
	ps := rdb.Subscribe(ctx, eventsChannel)
	r.ps = ps
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		// The channel ends when close closes ps (not when ctx ends).
		for msg := range ps.Channel() {
			var w wireEvent
			if json.Unmarshal([]byte(msg.Payload), &w) != nil || w.Node == r.node {
				continue
			}
			hub.Publish(ctx, w.Event)
		}
	}()
	go func() {
		defer r.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-r.out:
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				if err := rdb.Publish(pctx, eventsChannel, b).Err(); err != nil && ctx.Err() == nil {
					r.dropped.Add(1)
					log.Debug("an event for the other nodes' live views was not published", "err", err)
				}
				cancel()
			}
		}
	}()
	return r
}

// publish queues events for the other nodes without waiting for Redis
// (the caller holds a room's lock); a full queue drops, counted.
func (r *eventRelay) publish(evs ...cp.Event) {
	if r == nil {
		return
	}
	for _, e := range evs {
		b, err := json.Marshal(wireEvent{Node: r.node, Event: e})
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
	if r == nil {
		return
	}
	r.cancel()
	_ = r.ps.Close()
	r.wg.Wait()
}

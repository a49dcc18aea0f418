package roomnetd

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/roomnet/roomnet/controlplane/service"
)

// shardNotesChannel is the Redis channel on which the node that decides
// about lost shards (the reconciler lease's holder) tells the others.
const shardNotesChannel = "roomnet:cp:shards"

// shardNotes carries service.ShardNote between nodes through Redis
// pub/sub. At most once: the deciding node repeats "lost" every health
// round, and a node that never hears "reconciled" lifts its quarantine
// after the shard grace (controlplane/service/shardnotes.go).
type shardNotes struct {
	ch  *channel
	log *slog.Logger
}

var _ service.ShardNotifier = (*shardNotes)(nil)

// startShardNotes subscribes svc to the other nodes' notes and makes it
// send its own; nil without Redis (one node decides alone).
func startShardNotes(rdb redis.UniversalClient, svc *service.Service, log *slog.Logger) *shardNotes {
	if rdb == nil {
		return nil
	}
	n := &shardNotes{ch: openChannel(rdb, shardNotesChannel), log: log}
	n.ch.listen(func(_ context.Context, payload string) {
		var note service.ShardNote
		if err := json.Unmarshal([]byte(payload), &note); err != nil || note.Shard == "" {
			return
		}
		// The sender hears its own note too; applying it changes
		// nothing there (it is lost or reconciled already).
		svc.ApplyShardNote(note)
	})
	svc.SetShardNotifier(n)
	return n
}

// NotifyShard implements service.ShardNotifier: one PUBLISH, bounded.
func (n *shardNotes) NotifyShard(note service.ShardNote) {
	b, err := json.Marshal(note)
	if err != nil {
		return
	}
	if err := n.ch.publish(b); err != nil {
		n.log.Warn("a shard note was not published; it is repeated at the next health round", "shard", note.Shard, "state", note.State, "err", err)
	}
}

// close stops listening; before the Redis client closes.
func (n *shardNotes) close() {
	if n != nil {
		n.ch.close()
	}
}

package roomnetd

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

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
	rdb    redis.UniversalClient
	log    *slog.Logger
	ps     *redis.PubSub
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ service.ShardNotifier = (*shardNotes)(nil)

// startShardNotes subscribes svc to the other nodes' notes and makes it
// send its own; nil without Redis (one node decides alone).
func startShardNotes(rdb redis.UniversalClient, svc *service.Service, log *slog.Logger) *shardNotes {
	if rdb == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &shardNotes{rdb: rdb, log: log, cancel: cancel, ps: rdb.Subscribe(ctx, shardNotesChannel)}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// The channel ends when close closes ps.
		for msg := range n.ps.Channel() {
			var note service.ShardNote
			if err := json.Unmarshal([]byte(msg.Payload), &note); err != nil || note.Shard == "" {
				continue
			}
			// The sender hears its own note too; applying it changes
			// nothing there (it is lost or reconciled already).
			svc.ApplyShardNote(note)
		}
	}()
	svc.SetShardNotifier(n)
	return n
}

// NotifyShard implements service.ShardNotifier: one PUBLISH, bounded.
func (n *shardNotes) NotifyShard(note service.ShardNote) {
	b, err := json.Marshal(note)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.rdb.Publish(ctx, shardNotesChannel, b).Err(); err != nil {
		n.log.Warn("a shard note was not published; it is repeated at the next health round", "shard", note.Shard, "state", note.State, "err", err)
	}
}

// close stops listening; before the Redis client closes.
func (n *shardNotes) close() {
	if n == nil {
		return
	}
	n.cancel()
	_ = n.ps.Close()
	n.wg.Wait()
}

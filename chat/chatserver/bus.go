package chatserver

import "context"

// Bus fans published payloads out to every chat node, this one included.
// It is at-most-once: reliability comes from the store and sequence
// numbers, which clients fill gaps from. MemoryBus (bus_memory.go) is the
// single node's, RedisBus (bus_redis.go) every node's.
type Bus interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe registers the node's single handler; it is called for
	// every payload published on any topic, in publish order per topic.
	Subscribe(handler func(topic string, payload []byte))
	Close() error
}

// busResubscriber is a Bus that reports when its subscription is back
// after a break (RedisBus); the node then catches its clients up.
type busResubscriber interface {
	OnResubscribe(func())
}

// The bus's topics.
const (
	topicConv = "conv:" // + conversation: its messages, deletions and receipts
	topicCtl  = "ctl"   // membership news (nodes.go)
	topicMod  = "mod"   // mutes; each node keeps them in memory
)

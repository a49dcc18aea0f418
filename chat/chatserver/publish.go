package chatserver

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// publisher hands stored messages to a bus that makes a network round
// trip per publish (RedisBus) off the commit path: the committer acks a
// batch and queues its payloads, and one goroutine publishes everything
// queued in one round trip, in queue order, so every topic keeps its
// order. A payload the bus refuses is handed to this node's own clients
// (local); the other nodes' clients pull it by seq, as after any bus
// break. A queue past maxQueued (the bus stalled) is handled the same
// way rather than held.
type publisher struct {
	bus       batchBus
	local     func(topic string, payload []byte)
	log       *slog.Logger
	refused   prometheus.Counter
	maxQueued int

	mu     sync.Mutex
	queue  []busPayload
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

// batchBus is a Bus that publishes many payloads in one round trip.
type batchBus interface {
	// publishBatch publishes batch in order and sets the err of every
	// payload it could not publish.
	publishBatch(ctx context.Context, batch []busPayload)
}

type busPayload struct {
	topic   string
	payload []byte
	err     error
	sent    chan struct{} // when set: closed once the payload is handled
}

const (
	// publishTimeout bounds one batch's round trip.
	publishTimeout = 5 * time.Second
	// maxPublishQueue bounds the payloads waiting for a stalled bus:
	// a second or two of a busy node's sends.
	maxPublishQueue = 1 << 14
)

func newPublisher(bus batchBus, local func(string, []byte), refused prometheus.Counter, log *slog.Logger, maxQueued int) *publisher {
	p := &publisher{bus: bus, local: local, refused: refused, log: log, maxQueued: maxQueued,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p
}

// publish queues a payload; it never blocks on the bus. With track set
// it returns a channel closed once the payload was published (or refused
// and handed to local); nil when it is handled already.
//
// A full queue (the bus stalled) is handed to local in order, the
// payloads queued first, so that this node's clients never get a frame
// before an earlier one of its conversation (a deletion before its
// message).
func (p *publisher) publish(topic string, payload []byte, track bool) <-chan struct{} {
	m := busPayload{topic: topic, payload: payload}
	if track {
		m.sent = make(chan struct{})
	}
	p.mu.Lock()
	if p.closed || len(p.queue) >= p.maxQueued {
		spill := []busPayload{m} // closed: what is queued goes out on the bus
		if !p.closed {
			spill = append(p.queue, m)
			p.queue = nil
		}
		p.mu.Unlock()
		p.refused.Add(float64(len(spill)))
		p.log.Warn("the bus is stalled; queued messages go to this node's clients only, the other nodes' clients pull them", "payloads", len(spill))
		for _, s := range spill {
			p.local(s.topic, s.payload)
			if s.sent != nil {
				close(s.sent)
			}
		}
		return nil
	}
	p.queue = append(p.queue, m)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return m.sent
}

// close publishes what is queued and stops.
func (p *publisher) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	<-p.done
}

func (p *publisher) run() {
	defer close(p.done)
	var batch []busPayload
	for range p.wake {
		for {
			p.mu.Lock()
			batch, p.queue = p.queue, batch[:0]
			closed := p.closed
			p.mu.Unlock()
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			p.send(batch)
			clear(batch) // drop the payloads' memory
		}
	}
}

func (p *publisher) send(batch []busPayload) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	p.bus.publishBatch(ctx, batch)
	cancel()
	failed := 0
	var firstErr error
	for _, b := range batch {
		if b.err != nil {
			if failed == 0 {
				firstErr = b.err
			}
			failed++
			p.local(b.topic, b.payload)
		}
	}
	if failed > 0 {
		p.refused.Add(float64(failed))
		p.log.Warn("publishing messages; other nodes' clients will pull them", "failed", failed, "of", len(batch), "err", firstErr)
	}
	for _, b := range batch {
		if b.sent != nil {
			close(b.sent)
		}
	}
}

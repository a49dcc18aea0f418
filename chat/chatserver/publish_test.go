package chatserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roomnet/roomnet/internal/redistest"
)

// recorder collects payloads in arrival order.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(topic string, payload []byte) {
	r.mu.Lock()
	r.got = append(r.got, topic+"="+string(payload))
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func payloads(topic string, first, last int) []string {
	var out []string
	for i := first; i <= last; i++ {
		out = append(out, fmt.Sprintf("%s=%d", topic, i))
	}
	return out
}

// The publisher takes the bus round trip off the commit path; it must
// still deliver every payload once and in order, hand what Redis refuses
// to this node's own clients, and publish what is queued when closed.
func TestPublisherKeepsOrderAndFallsBackToLocalDelivery(t *testing.T) {
	srv := redistest.Start(t)
	var remote, local recorder
	sub := NewRedisBus(redisClient(t, srv), RedisBusOptions{Prefix: "test:pub:"})
	sub.Subscribe(remote.add)
	t.Cleanup(func() { sub.Close() })
	bus := NewRedisBus(redisClient(t, srv), RedisBusOptions{Prefix: "test:pub:"})
	t.Cleanup(func() { bus.Close() })
	waitFor(t, 5*time.Second, "subscribed", func() bool { return sub.Healthy() == nil })

	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	p := newPublisher(bus, local.add, refused, slog.New(slog.DiscardHandler), maxPublishQueue)
	const n = 5000
	for i := 1; i <= n; i++ {
		p.publish("conv:lobby:x", fmt.Appendf(nil, "%d", i), false)
	}
	waitFor(t, 10*time.Second, "every payload through redis", func() bool { return len(remote.list()) >= n })
	if got, want := remote.list(), payloads("conv:lobby:x", 1, n); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the subscriber received %d payloads, not 1..%d once each in order", len(got), n)
	}
	if got := local.list(); len(got) != 0 || testutil.ToFloat64(refused) != 0 {
		t.Fatalf("with redis up, %d payloads went to local delivery (counted %v)", len(got), testutil.ToFloat64(refused))
	}

	srv.Stop()
	for i := 1; i <= 20; i++ {
		p.publish("conv:room:y", fmt.Appendf(nil, "%d", i), false)
	}
	waitFor(t, 15*time.Second, "refused payloads delivered locally", func() bool { return len(local.list()) >= 20 })
	if got, want := local.list(), payloads("conv:room:y", 1, 20); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("local delivery got %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(refused); got != 20 {
		t.Fatalf("refused payloads counted %v, want 20", got)
	}

	// Closing publishes what is queued (here: refused, so local) and
	// later publishes are delivered locally at once.
	p.publish("conv:room:y", []byte("21"), false)
	p.close()
	p.publish("conv:room:y", []byte("22"), false)
	if got, want := local.list(), payloads("conv:room:y", 1, 22); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after close local delivery got %v, want %v", got, want)
	}
}

// A stalled bus does not hold memory without bound: at the queue's limit
// what is queued goes to local delivery, in order, before the new payload.
func TestPublisherQueueIsBounded(t *testing.T) {
	stall := make(chan struct{})
	bus := &stalledBus{release: stall}
	var local recorder
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	p := newPublisher(bus, local.add, refused, slog.New(slog.DiscardHandler), 10)
	p.publish("t", []byte("0"), false) // taken by the stalled batch
	waitFor(t, 5*time.Second, "the first batch taken", func() bool { return bus.taken() == 1 })
	for i := 1; i <= 15; i++ {
		p.publish("t", fmt.Appendf(nil, "%d", i), false)
	}
	if got, want := local.list(), payloads("t", 1, 11); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("at the limit, local delivery got %v, want %v (the queue, then the new one)", got, want)
	}
	if got := testutil.ToFloat64(refused); got != 11 {
		t.Fatalf("refused %v, want 11", got)
	}
	sent := p.publish("t", []byte("16"), true)
	if sent == nil {
		t.Fatal("a tracked publish below the limit was not queued")
	}
	close(stall)
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("a tracked payload was never marked sent")
	}
	p.close()
	if got := bus.taken(); got != 6 {
		t.Fatalf("the bus was handed %d payloads, want 6 (0, then 12 to 16)", got)
	}
}

// A tracked publish (a room's closing message) reports when the bus has
// taken the payload, and never blocks the caller.
func TestPublisherTracksUntilPublished(t *testing.T) {
	stall := make(chan struct{})
	bus := &stalledBus{release: stall}
	var local recorder
	p := newPublisher(bus, local.add, prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"}), slog.New(slog.DiscardHandler), 10)
	defer p.close()
	sent := p.publish("t", []byte("closing"), true)
	waitFor(t, 5*time.Second, "the payload handed to the bus", func() bool { return bus.taken() == 1 })
	select {
	case <-sent:
		t.Fatal("marked sent while the bus had not finished with it")
	case <-time.After(100 * time.Millisecond):
	}
	close(stall)
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("not marked sent once the bus took the payload")
	}
}

type stalledBus struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *stalledBus) publishBatch(_ context.Context, batch []busPayload) {
	b.mu.Lock()
	b.n += len(batch)
	b.mu.Unlock()
	<-b.release
}

func (b *stalledBus) taken() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

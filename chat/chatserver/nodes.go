package chatserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomnet/roomnet/chat"
)

// What a node does for the others when several share a bus (Redis):
// membership news on topic ctl, applied here at once and by the others
// when the bus delivers it, published again while the bus refuses it; and
// the catch-up after the node's subscription was broken.

// ctlNews is a membership event on the bus, with the node that applied
// it already (and skips its own copy).
type ctlNews struct {
	Node string `json:"node,omitempty"`
	MembershipEvent
}

// ctlRetryFor is how long a membership event the bus refused is
// published again before it is given up (the other nodes then learn it
// when the session reconnects or loads its rooms).
const ctlRetryFor = time.Minute

// ctlOut publishes membership news in order: once one is waiting for the
// bus to come back, the ones after it wait behind it.
type ctlOut struct {
	bus        Bus
	log        *slog.Logger
	closing    <-chan struct{}
	background func(func()) bool // runs drain on a goroutine Shutdown waits for

	mu      sync.Mutex
	queue   [][]byte
	running bool
}

// publish sends b on ctl, or queues it behind news still waiting.
func (o *ctlOut) publish(b []byte) {
	// Under the lock, so that news cannot overtake news that is failing
	// (and is then queued).
	o.mu.Lock()
	if len(o.queue) == 0 {
		err := o.bus.Publish(context.Background(), topicCtl, b)
		if err == nil {
			o.mu.Unlock()
			return
		}
		o.log.Warn("publishing a membership change; applied on this node, retrying for the others", "err", err)
	}
	o.queue = append(o.queue, b)
	if !o.running {
		o.running = o.background(o.drain)
	}
	o.mu.Unlock()
}

func (o *ctlOut) drain() {
	for {
		o.mu.Lock()
		if len(o.queue) == 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		b := o.queue[0]
		o.mu.Unlock()
		o.retry(b)
		o.mu.Lock()
		o.queue = o.queue[1:]
		o.mu.Unlock()
	}
}

// retry publishes b until the bus takes it, ctlRetryFor passes or the
// server shuts down.
func (o *ctlOut) retry(b []byte) {
	give := time.Now().Add(ctlRetryFor)
	wait := 100 * time.Millisecond
	for {
		select {
		case <-o.closing:
			return
		case <-time.After(wait):
		}
		err := o.bus.Publish(context.Background(), topicCtl, b)
		if err == nil {
			o.log.Info("membership change published after a bus outage")
			return
		}
		if time.Now().After(give) {
			o.log.Error("giving up publishing a membership change; other nodes apply it when the member reconnects", "err", err)
			return
		}
		wait = min(2*wait, time.Second)
	}
}

// applyCtl applies membership news from the bus, unless this node
// applied it already.
func (s *Server) applyCtl(payload []byte) {
	var n ctlNews
	if err := json.Unmarshal(payload, &n); err != nil || n.Node == s.node {
		return
	}
	s.applyLocal(n.MembershipEvent)
}

// background runs f on a goroutine that Shutdown waits for, unless the
// server is shutting down (then f does not run and background reports
// false). Under s.bgMu: Shutdown closes s.closing under s.bgMu before
// it waits, so no Add races its Wait.
func (s *Server) background(f func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	select {
	case <-s.closing:
		return false
	default:
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
	return true
}

// resubscribed starts catchUp off the bus's receive goroutine: a slow
// store must not hold back the bus (Redis drops a subscriber whose output
// buffer overflows).
func (s *Server) resubscribed() {
	s.background(s.catchUp)
}

// catchUp runs when the bus subscription is back after a break, during
// which this node missed what the others published. Every local
// connection gets one notify per conversation it follows with the newest
// stored seq, and pulls what it missed (a client already there ignores
// it); cached pages, which may hold a message deleted meanwhile, are
// dropped; mutes are read again from the store; and each session's rooms
// are brought in line with the directory (a membership event missed
// during the break).
func (s *Server) catchUp() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { // a shutdown does not wait for the store
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	conns := s.hub.all()
	following := map[string][]*conn{}
	for _, c := range conns {
		for _, conv := range c.convList() {
			following[conv] = append(following[conv], c)
		}
	}
	convs := make([]string, 0, len(following))
	for conv := range following {
		convs = append(convs, conv)
		s.pages.forget(conv)
	}
	tops := map[string]uint64{}
	for len(convs) > 0 {
		chunk := convs[:min(len(convs), 500)]
		convs = convs[len(chunk):]
		m, err := s.store.MaxSeqs(ctx, chunk)
		if err != nil {
			s.log.Warn("catching clients up after a bus outage; they catch up at their next sync", "err", err)
			return
		}
		for k, v := range m {
			tops[k] = v
		}
	}
	n := 0
	for conv, top := range tops {
		if top == 0 {
			continue
		}
		b, err := chat.Encode(chat.Frame{Type: chat.TypeNotify, Conv: conv, Seq: top})
		if err != nil {
			continue
		}
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
		if err != nil {
			continue
		}
		for _, c := range following[conv] {
			c.sendNotify(outFrame{prepared: pm, conv: conv, seq: top, notify: true})
			n++
		}
	}
	_ = s.mutes.load(ctx) // when the store fails, the mutes known stay
	s.log.Info("bus back: clients told to pull what they missed", "connections", len(conns), "notifies", n)
	s.recheckRooms(ctx, conns)
}

// recheckRooms gives each session the rooms the directory lists for its
// user now: a room it lost while the bus was broken is removed (reason
// left: the event that removed it, a leave, kick or close, was lost), a
// room it gained is added. Sessions still loading their rooms read them
// from the directory anyway and are skipped.
func (s *Server) recheckRooms(ctx context.Context, conns []*conn) {
	byUser := map[uint64][]*conn{}
	for _, c := range conns {
		byUser[c.user.ID] = append(byUser[c.user.ID], c)
	}
	removed, added := 0, 0
	for user, cs := range byUser {
		rooms, err := s.dir.RoomsOf(ctx, user)
		if err != nil {
			s.log.Warn("checking sessions' rooms after a bus outage", "err", err)
			return
		}
		now := map[string]bool{}
		for _, r := range rooms {
			now[chat.RoomConv(r)] = true
		}
		r, a := s.hub.recheck(cs, now)
		removed, added = removed+r, added+a
	}
	if removed+added > 0 {
		s.log.Info("bus back: sessions' rooms brought in line with the directory", "removed", removed, "added", added)
	}
}

// seqRetryAfter is the retry_after_ms of a send refused for want of a
// seq: the bus notices an outage within its ping interval, and a Redis
// restart or failover takes about as long.
const seqRetryAfter = time.Second

// failSend answers a send that was not stored: unavailable, with
// retry_after_ms when the shared sequencer could not allocate. Nothing
// was stored; a retry with the same client_msg_id is safe.
func failSend(c *conn, f chat.Frame, err error) {
	d := &chat.ErrorDetail{Code: chat.ErrUnavailable, Message: "not stored; retry"}
	if errors.Is(err, ErrSeqUnavailable) {
		d.Message = "sequence numbers unavailable; nothing stored; retry"
		d.RetryAfterMS = seqRetryAfter.Milliseconds()
	}
	c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: answerRef(f), Conv: f.Conv, Error: d})
}

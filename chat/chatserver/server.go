// Package chatserver serves roomnet's chat protocol over WebSocket: room
// conversations tied to room membership, lobbies and direct messages, with
// per-conversation sequence numbers, acks after durable group-committed
// writes, dedupe of retried sends, sync with unread counts, cursor-paged
// history and adaptive heartbeats tracked by one timer structure. It owns
// its connections and storage; membership comes from a Directory and from
// events the control plane applies.
//
// Server wires the parts, each a small type with its own lock that knows
// only what it is given: hub (sessions and subscriptions, the fan-out
// targets), dedupe (sends in flight and stored lately), cursorBuffer (read
// positions until the next flush), mutes, sendRates, admission, storms,
// pages (pull answers) and committer (group commit). Engines shared by
// several nodes sit behind interfaces with a memory implementation beside
// the Redis one: Bus (bus_memory.go, bus_redis.go) and Sequencer
// (sequencer_memory.go, sequencer_redis.go). Store is the union of the
// consumer-side MessageStore, CursorStore and MuteStore, all implemented by
// GormStore (SQLite or PostgreSQL).
package chatserver

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/controlplane/limits"
)

// Options configures a Server. Zero values take the defaults in brackets.
type Options struct {
	Store     Store
	Sequencer Sequencer // [MemorySequencer over Store]
	Bus       Bus       // [MemoryBus]
	Directory Directory
	Logger    *slog.Logger
	Registry  *prometheus.Registry // nil: metrics are not registered

	MaxBody      int           // bytes of a message body [4096]
	SendPerSec   float64       // per user [10]
	SendBurst    int           // [20]
	FramesPerSec float64       // per connection [50]
	FramesBurst  int           // [100]
	MaxLobbies   int           // lobbies a connection may join [10]
	MaxConvs     int           // conversations a connection may open with open_dm, all kinds counted [1000]
	MaxPositions int           // conversations named in one sync frame [1000]
	SyncMessages int           // newest messages per conversation in synced [20]
	HistoryMax   int           // messages per history page [200]
	PullMax      int           // messages per pulled page [1000]; one pull per notify even at thousands of messages a second
	DedupeMemory int           // sends remembered per node to answer retries without a lookup [16384]
	PriorityLane int           // frames [256]
	BulkLane     int           // frames [1024]
	WriteTimeout time.Duration // [10s]
	AuthTimeout  time.Duration // [5s]
	MaxBatch     int           // messages per group commit [256]
	CursorFlush  time.Duration // [500ms]
	// MaxViolations is how many frames of a connection may be refused
	// at once (over the frame budget, not understood) before it is closed
	// with chat.ClosePolicy [50]; one more is allowed every
	// ViolationEvery [200ms], so a client that slows down when told is
	// never closed.
	MaxViolations  int
	ViolationEvery time.Duration

	// Connection admission; a negative value turns a limit off.
	// MaxConnsPerUser bounds one user's connections [16];
	// MaxConnsPerAddr one client address's, counting sockets still in
	// their auth window [256]; AcceptPerSec and AcceptBurst how fast one
	// address may open them [20, 40]. Refusals before the upgrade are
	// HTTP 429 with Retry-After; a user over the cap who authenticates by
	// frame is closed with chat.CloseTooMany.
	MaxConnsPerUser int
	MaxConnsPerAddr int
	AcceptPerSec    float64
	AcceptBurst     int
	// AcceptLimiter keeps the accept budget of each client address [a
	// limits.Memory: this node's]. Nodes behind one proxy share one
	// (limits.Redis behind limits.Fallback) so that N nodes do not give an
	// address N budgets. Keys start with "chat_accept:".
	AcceptLimiter limits.Limiter
	// ClientIP names a request's client address for the limits above
	// [the host of r.RemoteAddr]. Behind a proxy, give the extractor that
	// trusts forwarding headers only from the configured proxies.
	ClientIP func(*http.Request) string

	// roomsLoaded, in tests, runs after a session loaded its rooms.
	roomsLoaded func()
	// Deadline is how long a client may stay silent given its announced
	// heartbeat interval and RTT [chat.Deadline].
	Deadline func(interval, srtt time.Duration) time.Duration

	// Storm mode of lobbies: entered at StormEnter messages per second
	// [100] measured over StormWindow [1s], left below StormExit [50];
	// subscribers then get a notify at most every NotifyInterval [250ms].
	StormEnter     float64
	StormExit      float64
	StormWindow    time.Duration
	NotifyInterval time.Duration
}

func (o *Options) defaults() {
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	set(&o.MaxBody, 4096)
	set(&o.SendBurst, 20)
	set(&o.FramesBurst, 100)
	set(&o.MaxLobbies, 10)
	set(&o.MaxConvs, 1000)
	set(&o.MaxPositions, 1000)
	set(&o.SyncMessages, 20)
	set(&o.HistoryMax, 200)
	set(&o.PullMax, 1000)
	set(&o.DedupeMemory, 16384)
	set(&o.PriorityLane, 256)
	set(&o.BulkLane, 1024)
	set(&o.MaxBatch, 256)
	set(&o.MaxViolations, 50)
	set(&o.MaxConnsPerUser, 16)
	set(&o.MaxConnsPerAddr, 256)
	set(&o.AcceptBurst, 40)
	if o.AcceptPerSec == 0 {
		o.AcceptPerSec = 20
	}
	if o.ClientIP == nil {
		o.ClientIP = remoteHost
	}
	if o.SendPerSec == 0 {
		o.SendPerSec = 10
	}
	if o.FramesPerSec == 0 {
		o.FramesPerSec = 50
	}
	if o.ViolationEvery == 0 {
		o.ViolationEvery = 200 * time.Millisecond
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.AuthTimeout == 0 {
		o.AuthTimeout = 5 * time.Second
	}
	if o.CursorFlush == 0 {
		o.CursorFlush = 500 * time.Millisecond
	}
	if o.Deadline == nil {
		o.Deadline = chat.Deadline
	}
	if o.StormEnter == 0 {
		o.StormEnter = 100
	}
	if o.StormExit == 0 {
		o.StormExit = o.StormEnter / 2
	}
	if o.StormWindow == 0 {
		o.StormWindow = time.Second
	}
	if o.NotifyInterval == 0 {
		o.NotifyInterval = 250 * time.Millisecond
	}
}

// Server is a chat node.
type Server struct {
	opts     Options
	log      *slog.Logger
	store    MessageStore
	seq      Sequencer
	bus      Bus
	dir      Directory
	upgrader websocket.Upgrader
	commit   *committer
	pub      *publisher // nil: the bus publishes in process (MemoryBus)
	dl       *deadlines
	admit    *admission
	metrics  metrics
	storms   *storms
	pages    *pages
	connEnv  *connEnv
	bufs     *sync.Pool // write buffers, held only while a writer drains

	hub     *hub          // sessions and subscriptions
	dedupe  *dedupe       // sends being written or stored lately
	cursors *cursorBuffer // read positions not yet flushed
	mutes   *mutes
	sends   *sendRates

	connSeq atomic.Uint64 // numbers connections into notify groups

	node string         // names this node on the bus
	ctl  *ctlOut        // membership news to the other nodes
	bgMu sync.Mutex     // orders background's Add before Shutdown's Wait
	bg   sync.WaitGroup // background work (nodes.go), waited for by Shutdown

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // the cursor flush and storm loops
}

// New starts a chat node.
func New(o Options) (*Server, error) {
	o.defaults()
	if o.Store == nil || o.Directory == nil || o.Logger == nil {
		return nil, errors.New("chatserver: Store, Directory and Logger are required")
	}
	if o.Sequencer == nil {
		o.Sequencer = NewMemorySequencer(o.Store)
	}
	if o.Bus == nil {
		o.Bus = NewMemoryBus()
	}
	s := &Server{
		opts: o, log: o.Logger.With("component", "chat"), store: o.Store, seq: o.Sequencer, bus: o.Bus, dir: o.Directory,
		upgrader: websocket.Upgrader{
			// A small read buffer: an idle connection holds it for
			// ever. Frames are built in pooled buffers and coalesced
			// by flushConn.
			ReadBufferSize: 512, WriteBufferSize: 1024,
			WriteBufferPool: &sync.Pool{},
			// Browsers send Origin; the token, not cookies, authenticates,
			// so any origin may connect.
			CheckOrigin: func(*http.Request) bool { return true },
		},
		hub: newHub(), dedupe: newDedupe(o.DedupeMemory), mutes: newMutes(o.Store),
		sends: newSendRates(o.SendPerSec, o.SendBurst), closing: make(chan struct{}),
		bufs: &sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }},
	}
	if o.StormExit > o.StormEnter {
		return nil, errors.New("chatserver: StormExit must not be above StormEnter")
	}
	s.metrics = newMetrics(o.Registry, func() int { return s.storms.count() }, s.connections)
	s.storms = newStorms(o, s.log, s.metrics.stormChanges)
	s.cursors = newCursorBuffer(o.Store, s.log)
	s.connEnv = &connEnv{
		priorityLane: o.PriorityLane, bulkLane: o.BulkLane, writeTimeout: o.WriteTimeout, log: s.log,
		slowClosed: s.metrics.slowClosed, bulkDropped: s.metrics.bulkDropped,
	}
	s.admit = newAdmission(o, s.log)
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := s.mutes.load(lctx)
	cancel()
	if err != nil {
		return nil, err
	}
	s.commit = newCommitter(o.Store, o.Sequencer, s.metrics.seqConflicts, s.log, o.MaxBatch)
	s.pages = newPages(o.Store, s.commit.tombstoneAll, s.log, s.metrics)
	if b, ok := s.bus.(batchBus); ok {
		s.pub = newPublisher(b, s.onBus, s.metrics.publishFailed, s.log, maxPublishQueue)
	}
	s.dl = newDeadlines(func(c *conn) {
		if exp := c.user.Expires; !exp.IsZero() && !time.Now().Before(exp) {
			c.shutdown(chat.CloseSessionRevoked, "session expired")
			return
		}
		s.metrics.heartbeatClosed.Inc()
		c.shutdown(chat.CloseHeartbeat, "missed heartbeats")
	})
	s.node = newSession()
	s.ctl = &ctlOut{bus: s.bus, log: s.log, closing: s.closing, background: s.background}
	if r, ok := s.bus.(busResubscriber); ok {
		r.OnResubscribe(s.resubscribed)
	}
	s.bus.Subscribe(s.onBus)
	s.wg.Add(2)
	go s.flushCursorsLoop()
	go func() {
		defer s.wg.Done()
		s.storms.loop(s.closing, s.notifyAll)
	}()
	return s, nil
}

// Stats reports live figures.
type Stats struct {
	Connections int
	Batches     int64
	Messages    int64
	Storms      int // lobbies in storm mode
	// Queued is the most frames waiting for any one connection.
	Queued int
}

func (s *Server) connections() int {
	n, _ := s.hub.counts()
	return n
}

// Figures are cheap live counts for dashboards.
type Figures struct {
	Connections int
	OnlineUsers int   // users with at least one connection to this node
	Stored      int64 // messages stored since start
}

// Figures returns live counts without visiting connections.
func (s *Server) Figures() Figures {
	var f Figures
	f.Connections, f.OnlineUsers = s.hub.counts()
	_, f.Stored = s.commit.stats()
	return f
}

// Stats returns live figures. It visits every connection: for tests and
// diagnostics, not for every metrics scrape.
func (s *Server) Stats() Stats {
	conns := s.hub.all()
	queued := 0
	for _, c := range conns {
		c.qmu.Lock()
		queued = max(queued, len(c.prio)+len(c.paged)+len(c.bulk))
		c.qmu.Unlock()
	}
	b, m := s.commit.stats()
	return Stats{Connections: len(conns), Batches: b, Messages: m, Storms: s.storms.count(), Queued: queued}
}

// Shutdown closes every connection (clients reconnect elsewhere or later),
// writes what is queued and stops.
func (s *Server) Shutdown(ctx context.Context) error {
	s.bgMu.Lock()
	s.closeOnce.Do(func() { close(s.closing) })
	s.bgMu.Unlock()
	for _, c := range s.hub.close() {
		c.shutdown(chat.CloseShutdown, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.hub.wait(); s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.bg.Wait()
	s.commit.close()
	if s.pub != nil {
		s.pub.close()
	}
	s.cursors.flush()
	s.dl.close()
	return nil
}

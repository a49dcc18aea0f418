// Package chatserver serves roomnet's chat protocol over WebSocket: room
// conversations tied to room membership, lobbies and direct messages, with
// per-conversation sequence numbers, acks after durable group-committed
// writes, dedupe of retried sends, sync with unread counts, cursor-paged
// history and adaptive heartbeats tracked by one timer structure. It owns
// its connections and storage; membership comes from a Directory and from
// events the control plane applies.
package chatserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/roomnet/roomnet/chat"
)

// Options configures a Server. Zero values take the defaults in brackets.
type Options struct {
	Store     Store
	Sequencer Sequencer // [MemorySequencer over Store]
	Bus       Bus       // [MemoryBus]
	Directory Directory
	Logger    *slog.Logger
	Registry  *prometheus.Registry // nil: metrics are not registered

	MaxBody       int           // bytes of a message body [4096]
	SendPerSec    float64       // per user [10]
	SendBurst     int           // [20]
	FramesPerSec  float64       // per connection [50]
	FramesBurst   int           // [100]
	MaxLobbies    int           // lobbies a connection may join [10]
	SyncMessages  int           // newest messages per conversation in synced [20]
	HistoryMax    int           // messages per history page [200]
	PullMax       int           // messages per pulled page [1000]; one pull per notify even at thousands of messages a second
	DedupeMemory  int           // sends remembered per node to answer retries without a lookup [16384]
	PriorityLane  int           // frames [256]
	BulkLane      int           // frames [1024]
	WriteTimeout  time.Duration // [10s]
	AuthTimeout   time.Duration // [5s]
	MaxBatch      int           // messages per group commit [256]
	CursorFlush   time.Duration // [500ms]
	MaxViolations int           // rate or frame errors before a disconnect [50]
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
	set(&o.SyncMessages, 20)
	set(&o.HistoryMax, 200)
	set(&o.PullMax, 1000)
	set(&o.DedupeMemory, 16384)
	set(&o.PriorityLane, 256)
	set(&o.BulkLane, 1024)
	set(&o.MaxBatch, 256)
	set(&o.MaxViolations, 50)
	if o.SendPerSec == 0 {
		o.SendPerSec = 10
	}
	if o.FramesPerSec == 0 {
		o.FramesPerSec = 50
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
	store    Store
	seq      Sequencer
	bus      Bus
	dir      Directory
	upgrader websocket.Upgrader
	commit   *committer
	dl       *deadlines
	metrics  metrics
	storms   *storms
	pages    *pages
	// compressor compresses pull answers, once per page.
	compressor *chat.Compressor
	bufs       *sync.Pool // write buffers, held only while a writer drains

	mu     sync.RWMutex
	conns  map[*conn]struct{}
	byConv map[string]map[*conn]struct{}
	byUser map[uint64]map[*conn]struct{}

	inflightMu sync.Mutex
	inflight   map[dedupeKey][]func(StoredMessage, error)
	recent     *recent // seqs of the sends this node stored lately

	limMu      sync.Mutex
	userLimits map[uint64]*rate.Limiter

	curMu    sync.Mutex
	cursors  map[cursorKey]Cursor
	flushing map[cursorKey]Cursor // the batch being written

	modMu sync.Mutex
	mutes map[uint64]time.Time // user → end of mute

	connSeq atomic.Uint64 // numbers connections into notify groups

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type dedupeKey struct {
	conv   string
	sender uint64
	id     string
}

type cursorKey struct {
	user uint64
	conv string
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
		conns: map[*conn]struct{}{}, byConv: map[string]map[*conn]struct{}{}, byUser: map[uint64]map[*conn]struct{}{},
		inflight: map[dedupeKey][]func(StoredMessage, error){}, userLimits: map[uint64]*rate.Limiter{},
		cursors: map[cursorKey]Cursor{}, closing: make(chan struct{}), mutes: map[uint64]time.Time{},
		compressor: chat.NewCompressor(), recent: newRecent(o.DedupeMemory),
		bufs: &sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }},
	}
	if o.StormExit > o.StormEnter {
		return nil, errors.New("chatserver: StormExit must not be above StormEnter")
	}
	s.storms = &storms{s: s, enter: o.StormEnter, exit: o.StormExit, window: o.StormWindow, interval: o.NotifyInterval, convs: map[string]*stormConv{}}
	s.pages = &pages{s: s, entries: map[pageKey]*page{}, heads: map[string]uint64{}, gen: map[string]uint64{}}
	s.metrics = newMetrics(o.Registry, s)
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := s.loadMutes(lctx)
	cancel()
	if err != nil {
		return nil, err
	}
	s.commit = newCommitter(o.Store, s.log, o.MaxBatch)
	s.dl = newDeadlines(func(c *conn) {
		s.metrics.heartbeatClosed.Inc()
		c.shutdown(chat.CloseHeartbeat, "missed heartbeats")
	})
	s.bus.Subscribe(s.onBus)
	s.wg.Add(2)
	go s.flushCursorsLoop()
	go s.storms.loop()
	return s, nil
}

// ServeHTTP upgrades to a WebSocket and serves one client.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.closing:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	var user User
	authed := false
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		u, err := s.dir.Authenticate(r.Context(), strings.TrimSpace(t))
		if err != nil {
			http.Error(w, `{"error":{"code":"unauthorized","message":"invalid token"}}`, http.StatusUnauthorized)
			return
		}
		user, authed = u, true
	}
	h := &hijacker{ResponseWriter: w, pool: s.bufs}
	ws, err := s.upgrader.Upgrade(h, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	ws.SetReadLimit(chat.MaxFrameBytes)
	if !authed {
		user, err = s.readAuth(r.Context(), ws)
		if err != nil {
			return
		}
	}
	s.serve(r.Context(), ws, h.nc, user)
}

func (s *Server) readAuth(ctx context.Context, ws *websocket.Conn) (User, error) {
	closeWith := func(code int, text string) {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		ws.Close()
	}
	_ = ws.SetReadDeadline(time.Now().Add(s.opts.AuthTimeout))
	_, b, err := ws.ReadMessage()
	if err != nil {
		closeWith(chat.CloseAuthTimeout, "no auth frame")
		return User{}, err
	}
	f, err := chat.Decode(b)
	if err != nil || f.Type != chat.TypeAuth {
		closeWith(chat.CloseUnauthorized, "first frame must be auth")
		return User{}, errors.New("no auth frame")
	}
	if f.V != chat.Version {
		closeWith(chat.CloseBadVersion, fmt.Sprintf("protocol version %d not supported; want %d", f.V, chat.Version))
		return User{}, errors.New("bad version")
	}
	u, err := s.dir.Authenticate(ctx, f.Token)
	if err != nil {
		closeWith(chat.CloseUnauthorized, "invalid token")
		return User{}, err
	}
	_ = ws.SetReadDeadline(time.Time{})
	return u, nil
}

func newSession() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) serve(ctx context.Context, ws *websocket.Conn, nc *flushConn, user User) {
	c := &conn{
		s: s, ws: ws, nc: nc, user: user, session: newSession(), group: uint8(s.connSeq.Add(1) % notifyGroups),
		closed: make(chan struct{}),
		frames: rate.NewLimiter(rate.Limit(s.opts.FramesPerSec), s.opts.FramesBurst),
		convs:  map[string]bool{},
	}
	rooms, err := s.dir.RoomsOf(ctx, user.ID)
	if err != nil {
		s.log.Error("loading rooms of a chat user", "user", user.Name, "err", err)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(chat.CloseShutdown, "try again"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	for _, r := range rooms {
		c.convs[chat.RoomConv(r)] = true
	}
	if !s.register(c) {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(chat.CloseShutdown, "server shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	// register counted the session in s.wg; the reader goroutine or the
	// failure below gives it back.
	s.dl.set(c, time.Now().Add(s.opts.Deadline(chat.MaxHeartbeat, 0)))
	// Newest seqs after subscribing: everything above them is pushed.
	convs := c.convList()
	tops, err := s.store.MaxSeqs(ctx, convs)
	if err != nil {
		s.log.Error("starting a chat session", "user", user.Name, "err", err)
		c.shutdown(chat.CloseShutdown, "storage unavailable; try again")
		c.writers.Wait()
		s.unregister(c)
		s.dl.remove(c)
		s.wg.Done()
		return
	}
	states := make([]chat.ConvState, len(convs))
	for i, conv := range convs {
		states[i] = chat.ConvState{Conv: conv, MaxSeq: tops[conv]}
	}
	c.sendFrame(chat.Frame{Type: chat.TypeHello, Hello: &chat.Hello{
		Session: c.session, User: user.Name, UserID: user.ID,
		MinIntervalMS: int(chat.MinHeartbeat.Milliseconds()), MaxIntervalMS: int(chat.MaxHeartbeat.Milliseconds()),
		MaxBody: s.opts.MaxBody, SendPerSec: int(s.opts.SendPerSec), Convs: states,
	}})
	// The handler returns and takes its deep stack and the HTTP server's
	// buffers with it; a fresh goroutine with a shallow stack reads.
	go func() {
		defer s.wg.Done()
		s.readLoop(context.Background(), c)
		c.shutdown(websocket.CloseNormalClosure, "")
		c.writers.Wait()
		s.unregister(c)
		s.dl.remove(c)
	}()
}

// register adds a session and counts it in s.wg, unless the server is
// shutting down: under s.mu, so that Shutdown, which closes s.closing
// under s.mu too, either sees the session or refuses it (a WaitGroup Add
// racing Shutdown's Wait would be a bug).
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return false
	default:
	}
	s.wg.Add(1)
	s.conns[c] = struct{}{}
	if s.byUser[c.user.ID] == nil {
		s.byUser[c.user.ID] = map[*conn]struct{}{}
	}
	s.byUser[c.user.ID][c] = struct{}{}
	for conv := range c.convs {
		s.subscribeLocked(c, conv)
	}
	return true
}

func (s *Server) subscribeLocked(c *conn, conv string) {
	if s.byConv[conv] == nil {
		s.byConv[conv] = map[*conn]struct{}{}
	}
	s.byConv[conv][c] = struct{}{}
}

func (s *Server) unsubscribeLocked(c *conn, conv string) {
	if m := s.byConv[conv]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.byConv, conv)
		}
	}
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if m := s.byUser[c.user.ID]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.byUser, c.user.ID)
		}
	}
	for _, conv := range c.convList() {
		s.unsubscribeLocked(c, conv)
	}
}

func (s *Server) readLoop(ctx context.Context, c *conn) {
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseMessageTooBig {
				s.metrics.violations.Inc()
			}
			if strings.Contains(err.Error(), "read limit exceeded") {
				c.shutdown(websocket.CloseMessageTooBig, "frame too large")
			}
			return
		}
		c.mu.Lock()
		deadline := s.opts.Deadline(c.interval, c.rtt)
		c.mu.Unlock()
		s.dl.set(c, time.Now().Add(deadline))
		if !c.frames.Allow() {
			if s.violation(c, "", chat.ErrRateLimited, "too many frames; slow down") {
				return
			}
			continue
		}
		f, err := chat.Decode(b)
		if err != nil {
			if s.violation(c, "", chat.ErrBadFrame, err.Error()) {
				return
			}
			continue
		}
		if f.V != chat.Version {
			c.shutdown(chat.CloseBadVersion, fmt.Sprintf("protocol version %d not supported; want %d", f.V, chat.Version))
			return
		}
		s.metrics.framesIn.WithLabelValues(frameLabel(f.Type)).Inc()
		s.handle(ctx, c, f)
	}
}

// violation answers an error and reports whether the client has now
// misbehaved often enough to be disconnected.
func (s *Server) violation(c *conn, ref, code, msg string) bool {
	s.metrics.violations.Inc()
	c.violations++
	if c.violations > s.opts.MaxViolations {
		c.shutdown(chat.ClosePolicy, "too many bad or excess frames")
		return true
	}
	c.sendError(ref, code, msg)
	return false
}

func frameLabel(t string) string {
	switch t {
	case chat.TypeSend, chat.TypeAck, chat.TypeRead, chat.TypeHistory, chat.TypePull, chat.TypePing, chat.TypeSync, chat.TypeJoin, chat.TypeLeave, chat.TypeOpenDM, chat.TypeAuth:
		return t
	}
	return "other"
}

func (s *Server) handle(ctx context.Context, c *conn, f chat.Frame) {
	switch f.Type {
	case chat.TypeSend:
		s.handleSend(ctx, c, f)
	case chat.TypeAck, chat.TypeRead:
		s.handleCursor(c, f)
	case chat.TypeHistory:
		s.handleHistory(ctx, c, f)
	case chat.TypePull:
		s.handlePull(ctx, c, f)
	case chat.TypePing:
		c.mu.Lock()
		c.rtt = time.Duration(max(f.RTT, 0)) * time.Millisecond
		c.interval = time.Duration(max(f.Interval, 0)) * time.Millisecond
		deadline := s.opts.Deadline(c.interval, c.rtt)
		c.mu.Unlock()
		s.dl.set(c, time.Now().Add(deadline))
		c.sendFrame(chat.Frame{Type: chat.TypePong, Ref: f.Ref, TS: f.TS, ServerTS: time.Now().UnixMilli()})
	case chat.TypeSync:
		s.handleSync(ctx, c, f)
	case chat.TypeJoin:
		s.handleJoin(c, f)
	case chat.TypeLeave:
		if kind, _ := chat.ConvKind(f.Conv); kind != chat.KindLobby {
			c.sendError(f.Ref, chat.ErrInvalid, "only lobbies are left this way; leave rooms through the API")
			return
		}
		if c.revoke(f.Conv) {
			c.mu.Lock()
			c.lobbies--
			c.mu.Unlock()
			s.mu.Lock()
			s.unsubscribeLocked(c, f.Conv)
			s.mu.Unlock()
		}
		c.sendFrame(chat.Frame{Type: chat.TypeRemoved, Ref: f.Ref, Conv: f.Conv, Reason: "left"})
	case chat.TypeOpenDM:
		s.handleOpenDM(ctx, c, f)
	case chat.TypeAuth:
		c.sendError(f.Ref, chat.ErrInvalid, "already authenticated")
	default:
		_ = s.violation(c, f.Ref, chat.ErrBadFrame, fmt.Sprintf("unknown frame type %q", f.Type))
	}
}

func (s *Server) handleJoin(c *conn, f chat.Frame) {
	if kind, ok := chat.ConvKind(f.Conv); !ok || kind != chat.KindLobby {
		c.sendError(f.Ref, chat.ErrInvalid, "join takes a lobby (lobby:<name>); rooms are joined through the API")
		return
	}
	c.mu.Lock()
	if !c.convs[f.Conv] {
		if c.lobbies >= s.opts.MaxLobbies {
			c.mu.Unlock()
			c.sendError(f.Ref, chat.ErrTooMany, fmt.Sprintf("at most %d lobbies per connection", s.opts.MaxLobbies))
			return
		}
		c.lobbies++
		c.convs[f.Conv] = true
	}
	c.mu.Unlock()
	s.mu.Lock()
	s.subscribeLocked(c, f.Conv)
	s.mu.Unlock()
	// The newest seq after subscribing: everything above it is pushed.
	top, err := s.store.MaxSeq(context.Background(), f.Conv)
	if err != nil {
		c.sendError(f.Ref, chat.ErrUnavailable, "join unavailable; retry")
		return
	}
	c.sendFrame(chat.Frame{Type: chat.TypeJoined, Ref: f.Ref, Conv: f.Conv, Seq: top})
}

func (s *Server) handleOpenDM(ctx context.Context, c *conn, f chat.Frame) {
	u, err := s.dir.UserByName(ctx, f.Username)
	if err != nil || u.ID == c.user.ID {
		c.sendError(f.Ref, chat.ErrNotFound, "no such user")
		return
	}
	conv := chat.DirectConv(c.user.ID, u.ID)
	c.allow(conv)
	top, err := s.store.MaxSeq(ctx, conv)
	if err != nil {
		c.sendError(f.Ref, chat.ErrUnavailable, "unavailable; retry")
		return
	}
	c.sendFrame(chat.Frame{Type: chat.TypeJoined, Ref: f.Ref, Conv: conv, Username: u.Name, Seq: top})
}

// access reports whether c may use conv: rooms by membership, lobbies once
// joined, direct conversations for their two users once opened or used.
func (s *Server) access(c *conn, conv string) bool { return c.can(conv) }

func (s *Server) userLimiter(id uint64) *rate.Limiter {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l, ok := s.userLimits[id]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.opts.SendPerSec), s.opts.SendBurst)
		s.userLimits[id] = l
	}
	return l
}

func (s *Server) handleSend(ctx context.Context, c *conn, f chat.Frame) {
	ref := f.ClientMsgID
	switch {
	case f.ClientMsgID == "" || len(f.ClientMsgID) > 64:
		c.sendError(ref, chat.ErrInvalid, "client_msg_id: 1 to 64 bytes")
		return
	case !s.access(c, f.Conv):
		c.sendError(ref, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	case f.Body == "" || !utf8.ValidString(f.Body):
		c.sendError(ref, chat.ErrInvalid, "body: non-empty UTF-8 text")
		return
	case len(f.Body) > s.opts.MaxBody:
		c.sendError(ref, chat.ErrTooLarge, fmt.Sprintf("body: at most %d bytes", s.opts.MaxBody))
		return
	}
	key := dedupeKey{f.Conv, c.user.ID, f.ClientMsgID}
	reply := func(m StoredMessage, err error) {
		if err != nil {
			c.sendError(ref, chat.ErrUnavailable, "not stored; retry")
			return
		}
		c.sendFrame(chat.Frame{Type: chat.TypeSent, Ref: ref, Conv: m.Conv, ClientMsgID: m.ClientMsgID, Seq: m.Seq, TS: m.CreatedAt.UnixMilli()})
	}
	// A retry of a send that is still being written waits for it.
	s.inflightMu.Lock()
	if waiters, ok := s.inflight[key]; ok {
		s.inflight[key] = append(waiters, reply)
		s.inflightMu.Unlock()
		return
	}
	s.inflight[key] = []func(StoredMessage, error){reply}
	s.inflightMu.Unlock()
	finish := func(m StoredMessage, err error) {
		s.inflightMu.Lock()
		waiters := s.inflight[key]
		delete(s.inflight, key)
		s.inflightMu.Unlock()
		for _, w := range waiters {
			w(m, err)
		}
	}
	// A retry of a send that was stored gets the same seq, nothing new:
	// from memory when this node stored it lately, else the store's
	// unique index refuses the copy and append answers with the seq
	// stored (no lookup on every send: it was a fifth of a busy node's CPU).
	if m, ok := s.recent.get(key); ok {
		s.metrics.dedupes.Inc()
		finish(m, nil)
		return
	}
	if until, muted := s.MutedUntil(c.user.ID); muted {
		s.inflightMu.Lock()
		delete(s.inflight, key)
		s.inflightMu.Unlock()
		c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: ref, Until: until.UnixMilli(),
			Error: &chat.ErrorDetail{Code: chat.ErrMuted, Message: "muted by a moderator until " + until.UTC().Format(time.RFC3339)}})
		return
	}
	if !s.userLimiter(c.user.ID).Allow() {
		// Not a violation: the frame limiter bounds how often this can be
		// answered, and the client retries after its backoff.
		s.inflightMu.Lock()
		delete(s.inflight, key)
		s.inflightMu.Unlock()
		c.sendError(ref, chat.ErrRateLimited, "sending too fast; retry later")
		return
	}
	s.append(ctx, StoredMessage{
		Conv: f.Conv, Kind: chat.KindText, SenderID: c.user.ID, SenderName: c.user.Name,
		ClientMsgID: f.ClientMsgID, Body: f.Body,
	}, finish)
}

// append allocates a seq, group-commits the message, publishes it once it
// is durable and then calls done.
func (s *Server) append(ctx context.Context, m StoredMessage, done func(StoredMessage, error)) {
	seq, err := s.seq.Next(ctx, m.Conv)
	if err != nil {
		s.log.Error("allocating seq", "conv", m.Conv, "err", err)
		done(StoredMessage{}, err)
		return
	}
	m.Seq = seq
	m.CreatedAt = time.Now().UTC()
	start := time.Now()
	s.commit.submit(&pending{msg: m, done: func(stored StoredMessage, err error) {
		if errors.Is(err, ErrDuplicate) {
			// A concurrent retry on another node won: answer with its seq.
			found, ok, ferr := s.store.FindByClientID(context.Background(), m.Conv, m.SenderID, m.ClientMsgID)
			if ferr == nil && ok {
				s.metrics.dedupes.Inc()
				s.recent.add(found)
				done(found, nil)
				return
			}
		}
		if err != nil {
			done(StoredMessage{}, err)
			return
		}
		s.metrics.stored.Inc()
		s.metrics.commitLatency.Observe(time.Since(start).Seconds())
		if stored.SenderID != 0 {
			s.recent.add(stored)
		}
		s.publishMessage(stored)
		done(stored, nil)
	}})
}

func toWire(m StoredMessage) chat.Message {
	return chat.Message{
		Conv: m.Conv, Seq: m.Seq, Kind: m.Kind, From: m.SenderName, ClientMsgID: m.ClientMsgID,
		Body: m.Body, TS: m.CreatedAt.UnixMilli(), Critical: m.Critical,
	}
}

const (
	topicConv = "conv:"
	topicCtl  = "ctl"
)

func (s *Server) publishMessage(m StoredMessage) {
	wm := toWire(m)
	b, err := chat.Encode(chat.Frame{Type: chat.TypeMsg, Msg: &wm})
	if err != nil {
		s.log.Error("encoding message", "err", err)
		return
	}
	if err := s.bus.Publish(context.Background(), topicConv+m.Conv, b); err != nil {
		s.log.Warn("publishing message; clients will pull it", "conv", m.Conv, "err", err)
	}
}

// onBus delivers a published frame to this node's connections. It is
// encoded once and prepared once for all receivers.
func (s *Server) onBus(topic string, payload []byte) {
	if topic == topicCtl {
		var ev MembershipEvent
		if err := json.Unmarshal(payload, &ev); err == nil {
			s.applyLocal(ev)
		}
		return
	}
	if topic == topicMod {
		var n muteNews
		if err := json.Unmarshal(payload, &n); err == nil {
			s.applyMute(n)
		}
		return
	}
	conv, ok := strings.CutPrefix(topic, topicConv)
	if !ok {
		return
	}
	f, err := chat.Decode(payload)
	if err != nil {
		return
	}
	if f.Type == chat.TypeDeleted {
		s.pages.forget(conv) // cached pages still hold the body
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, payload)
	if err != nil {
		return
	}
	out := outFrame{prepared: pm}
	bulk := false
	if f.Msg != nil {
		s.pages.published(conv, f.Msg.Seq)
		if kind, _ := chat.ConvKind(conv); kind == chat.KindLobby && !f.Msg.Critical {
			if s.storms.observe(conv, f.Msg.Seq, time.Now()) {
				return // the next notify announces it
			}
		}
		bulk = !f.Msg.Critical
		if f.Msg.Critical {
			s.storms.pushedCritical(conv, f.Msg.Seq)
		}
		out.conv, out.seq = conv, f.Msg.Seq
	}
	targets := s.targets(conv)
	s.metrics.fanout.Add(float64(len(targets)))
	for _, c := range targets {
		if bulk {
			c.sendBulk(out)
		} else {
			c.sendPriority(out)
		}
	}
}

// targets lists the connections that receive conv: its subscribers, and
// for a direct conversation every connection of its two users (who are
// then allowed to use it).
func (s *Server) targets(conv string) []*conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*conn
	if kind, _ := chat.ConvKind(conv); kind == chat.KindDirect {
		var a, b uint64
		fmt.Sscanf(conv, "dm:%d:%d", &a, &b)
		for _, id := range []uint64{a, b} {
			for c := range s.byUser[id] {
				c.allow(conv)
				out = append(out, c)
			}
		}
		return out
	}
	for c := range s.byConv[conv] {
		out = append(out, c)
	}
	return out
}

func (s *Server) handleCursor(c *conn, f chat.Frame) {
	if f.Seq == 0 {
		return
	}
	if !s.access(c, f.Conv) {
		c.sendError(f.Ref, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	}
	k := cursorKey{c.user.ID, f.Conv}
	s.curMu.Lock()
	cur, ok := s.cursors[k]
	if !ok {
		cur = Cursor{UserID: c.user.ID, Conv: f.Conv}
	}
	if f.Type == chat.TypeRead {
		cur.Read = max(cur.Read, f.Seq)
		cur.Delivered = max(cur.Delivered, f.Seq)
	} else {
		cur.Delivered = max(cur.Delivered, f.Seq)
	}
	s.cursors[k] = cur
	s.curMu.Unlock()
	if kind, _ := chat.ConvKind(f.Conv); kind == chat.KindDirect && f.Type == chat.TypeAck {
		b, err := chat.Encode(chat.Frame{Type: chat.TypeReceipt, Conv: f.Conv, Seq: f.Seq, By: c.user.Name})
		if err == nil {
			_ = s.bus.Publish(context.Background(), topicConv+f.Conv, b)
		}
	}
}

func (s *Server) flushCursorsLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CursorFlush)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			s.flushCursors()
			return
		case <-t.C:
			s.flushCursors()
		}
	}
}

func (s *Server) flushCursors() {
	s.curMu.Lock()
	if len(s.cursors) == 0 {
		s.curMu.Unlock()
		return
	}
	batch := make([]Cursor, 0, len(s.cursors))
	for _, c := range s.cursors {
		batch = append(batch, c)
	}
	// Until the write commits, the batch is in neither the map nor the
	// store: cursorsOf reads it from here meanwhile.
	s.flushing = s.cursors
	s.cursors = map[cursorKey]Cursor{}
	s.curMu.Unlock()
	defer func() {
		s.curMu.Lock()
		s.flushing = nil
		s.curMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.SaveCursors(ctx, batch); err != nil {
		s.log.Warn("saving read positions; will retry", "err", err)
		s.curMu.Lock()
		for _, c := range batch {
			k := cursorKey{c.UserID, c.Conv}
			old := s.cursors[k]
			old.UserID, old.Conv = c.UserID, c.Conv
			old.Read, old.Delivered = max(old.Read, c.Read), max(old.Delivered, c.Delivered)
			s.cursors[k] = old
		}
		s.curMu.Unlock()
	}
}

// cursorsOf merges stored and not yet flushed positions.
func (s *Server) cursorsOf(ctx context.Context, userID uint64) (map[string]Cursor, error) {
	stored, err := s.store.Cursors(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := map[string]Cursor{}
	for _, c := range stored {
		out[c.Conv] = c
	}
	s.curMu.Lock()
	for _, m := range []map[cursorKey]Cursor{s.flushing, s.cursors} {
		for k, c := range m {
			if k.user == userID {
				old := out[k.conv]
				old.UserID, old.Conv = c.UserID, c.Conv
				old.Read, old.Delivered = max(old.Read, c.Read), max(old.Delivered, c.Delivered)
				out[k.conv] = old
			}
		}
	}
	s.curMu.Unlock()
	return out, nil
}

func (s *Server) handleHistory(ctx context.Context, c *conn, f chat.Frame) {
	if !s.access(c, f.Conv) {
		c.sendError(f.Ref, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	}
	limit := f.Limit
	if limit <= 0 || limit > s.opts.HistoryMax {
		limit = s.opts.HistoryMax
	}
	msgs, err := s.store.History(ctx, f.Conv, f.Before, f.After, limit+1)
	if err != nil {
		c.sendError(f.Ref, chat.ErrUnavailable, "history unavailable; retry")
		return
	}
	more := len(msgs) > limit
	if more {
		if f.After > 0 {
			msgs = msgs[:limit]
		} else {
			msgs = msgs[1:]
		}
	}
	out := make([]chat.Message, len(msgs))
	for i, m := range msgs {
		out[i] = toWire(m)
	}
	c.sendFrame(chat.Frame{Type: chat.TypePage, Ref: f.Ref, Conv: f.Conv, Messages: out, HasMore: more})
}

func (s *Server) handleSync(ctx context.Context, c *conn, f chat.Frame) {
	cursors, err := s.cursorsOf(ctx, c.user.ID)
	if err != nil {
		c.sendError(f.Ref, chat.ErrUnavailable, "sync unavailable; retry")
		return
	}
	convs := map[string]bool{}
	for _, conv := range c.convList() {
		convs[conv] = true
	}
	// Direct conversations with messages are the user's.
	dms, err := s.store.DirectConvs(ctx, c.user.ID)
	if err != nil {
		c.sendError(f.Ref, chat.ErrUnavailable, "sync unavailable; retry")
		return
	}
	for _, conv := range dms {
		c.allow(conv)
		convs[conv] = true
	}
	for conv := range f.Positions {
		if kind, ok := chat.ConvKind(conv); ok && kind == chat.KindDirect && isParticipant(conv, c.user.ID) {
			c.allow(conv)
			convs[conv] = true
		}
	}
	list := make([]string, 0, len(convs))
	for conv := range convs {
		list = append(list, conv)
	}
	maxes, err := s.store.MaxSeqs(ctx, list)
	if err != nil {
		c.sendError(f.Ref, chat.ErrUnavailable, "sync unavailable; retry")
		return
	}
	out := make([]chat.ConvState, 0, len(list))
	for _, conv := range list {
		st := chat.ConvState{Conv: conv, MaxSeq: maxes[conv], ReadSeq: cursors[conv].Read}
		if st.MaxSeq > st.ReadSeq {
			st.Unread = st.MaxSeq - st.ReadSeq
		}
		pos := f.Positions[conv]
		if st.MaxSeq > pos {
			msgs, err := s.store.History(ctx, conv, 0, 0, s.opts.SyncMessages)
			if err != nil {
				c.sendError(f.Ref, chat.ErrUnavailable, "sync unavailable; retry")
				return
			}
			for _, m := range msgs {
				if m.Seq > pos {
					st.Messages = append(st.Messages, toWire(m))
				}
			}
		}
		out = append(out, st)
	}
	c.sendFrame(chat.Frame{Type: chat.TypeSynced, Ref: f.Ref, Convs: out})
}

func isParticipant(conv string, user uint64) bool {
	var a, b uint64
	if _, err := fmt.Sscanf(conv, "dm:%d:%d", &a, &b); err != nil {
		return false
	}
	return a == user || b == user
}

// Apply applies room membership events: members gain or lose a room's
// conversation at once, on every node, and the room gets an ordered
// system message for each event. The control plane calls it before it
// answers the request that caused the events.
func (s *Server) Apply(events []MembershipEvent) {
	for _, ev := range events {
		b, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		if err := s.bus.Publish(context.Background(), topicCtl, b); err != nil {
			s.log.Warn("publishing membership change", "err", err)
		}
		if text := systemText(ev); text != "" {
			conv := chat.RoomConv(ev.RoomID)
			s.append(context.Background(), StoredMessage{
				Conv: conv, Kind: chat.KindSystem, ClientMsgID: "sys-" + newSession() + newSession(),
				Body: text, Critical: true,
			}, func(StoredMessage, error) {})
		}
	}
}

// ErrBadAnnounce reports an announcement to a conversation that cannot
// take one, or with a bad text.
var ErrBadAnnounce = errors.New("chatserver: announce")

// Announce posts a critical system message to conv (a room or a lobby):
// stored and ordered like any message, pushed on the priority lane even
// in storm mode. It returns once the message is durable.
func (s *Server) Announce(ctx context.Context, conv, text string) (uint64, error) {
	if kind, ok := chat.ConvKind(conv); !ok || kind == chat.KindDirect {
		return 0, fmt.Errorf("%w: to %q: want a room or a lobby", ErrBadAnnounce, conv)
	}
	if text == "" || len(text) > s.opts.MaxBody || !utf8.ValidString(text) {
		return 0, fmt.Errorf("%w: 1 to %d bytes of UTF-8 text", ErrBadAnnounce, s.opts.MaxBody)
	}
	type result struct {
		m   StoredMessage
		err error
	}
	done := make(chan result, 1)
	s.append(ctx, StoredMessage{
		Conv: conv, Kind: chat.KindSystem, ClientMsgID: "sys-" + newSession() + newSession(),
		Body: text, Critical: true,
	}, func(m StoredMessage, err error) { done <- result{m, err} })
	select {
	case r := <-done:
		return r.m.Seq, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func systemText(ev MembershipEvent) string {
	switch ev.Type {
	case "member_joined":
		return ev.Username + " joined"
	case "member_left":
		return ev.Username + " left"
	case "member_kicked":
		return ev.Username + " was kicked"
	case "host_changed":
		return ev.Username + " is now the host"
	case "room_closed":
		return "the room was closed"
	}
	return ""
}

// applyLocal changes this node's connections for one membership event.
func (s *Server) applyLocal(ev MembershipEvent) {
	conv := chat.RoomConv(ev.RoomID)
	s.mu.Lock()
	defer s.mu.Unlock()
	remove := func(c *conn, reason string) {
		if c.revoke(conv) {
			s.unsubscribeLocked(c, conv)
			c.sendFrame(chat.Frame{Type: chat.TypeRemoved, Conv: conv, Reason: reason})
		}
	}
	switch ev.Type {
	case "user_banned":
		for c := range s.byUser[ev.UserID] {
			go c.shutdown(chat.CloseSessionRevoked, "account banned")
		}
	case "member_joined":
		for c := range s.byUser[ev.UserID] {
			c.allow(conv)
			s.subscribeLocked(c, conv)
		}
	case "member_left":
		for c := range s.byUser[ev.UserID] {
			remove(c, "left")
		}
	case "member_kicked":
		for c := range s.byUser[ev.UserID] {
			remove(c, "kicked")
		}
	case "room_closed":
		for c := range s.byConv[conv] {
			remove(c, "closed")
		}
		s.pages.forget(conv)
	}
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.conns)
}

// Figures are cheap live counts for dashboards.
type Figures struct {
	Connections int
	OnlineUsers int   // users with at least one connection to this node
	Stored      int64 // messages stored since start
}

// Figures returns live counts without visiting connections.
func (s *Server) Figures() Figures {
	s.mu.RLock()
	f := Figures{Connections: len(s.conns), OnlineUsers: len(s.byUser)}
	s.mu.RUnlock()
	_, f.Stored = s.commit.stats()
	return f
}

// Stats returns live figures. It visits every connection: for tests and
// diagnostics, not for every metrics scrape.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	n := len(s.conns)
	queued := 0
	for c := range s.conns {
		c.qmu.Lock()
		queued = max(queued, len(c.prio)+len(c.paged)+len(c.bulk))
		c.qmu.Unlock()
	}
	s.mu.RUnlock()
	b, m := s.commit.stats()
	return Stats{Connections: n, Batches: b, Messages: m, Storms: s.storms.count(), Queued: queued}
}

// Shutdown closes every connection (clients reconnect elsewhere or later),
// writes what is queued and stops.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closeOnce.Do(func() { close(s.closing) })
	s.mu.Unlock()
	s.mu.RLock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	for _, c := range conns {
		c.shutdown(chat.CloseShutdown, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.commit.close()
	s.flushCursors()
	s.dl.close()
	return nil
}

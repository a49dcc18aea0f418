// Package chatclient is the Go SDK of roomnet chat: one WebSocket with
// reconnects and resync, sends that are retried with backoff until the
// server acknowledges them durably (or reported failed, never dropped),
// received messages deduplicated and delivered in seq order per
// conversation with gaps filled from history, unread counts, read
// marking and an adaptive heartbeat. The CLI and tests use it.
package chatclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/seqbuf"
)

// Options configures a Client. Zero values take the defaults in brackets.
type Options struct {
	URL   string // ws:// or wss:// URL of /ws
	Token string

	// SendBackoff spaces resends of an unacknowledged message
	// [Initial 500ms, Factor 2, Max 8s, Jitter 0.2].
	SendBackoff Backoff
	// MaxAttempts bounds sends of one message before it is reported
	// failed [8].
	MaxAttempts int
	// Reconnect spaces reconnection attempts [200ms, 2, 5s, 0.3].
	Reconnect Backoff
	// GapTimeout is how long a gap may stay open before it is filled from
	// history [300ms].
	GapTimeout time.Duration
	// SyncEvery re-syncs positions even without a reconnect, so that a
	// lost last message of a quiet conversation is found [30s].
	SyncEvery time.Duration
	// RequestTimeout bounds history, join and sync requests [5s].
	RequestTimeout time.Duration
	// MaxBuffer bounds each conversation's reorder buffer [4096].
	MaxBuffer int
	// Backfill is how many messages before the newest a conversation new
	// to this client starts with; older ones are paged with History [20].
	Backfill int
	// Events is the event channel's capacity [4096]; a consumer that
	// falls behind blocks delivery, it never loses events.
	Events int
	// Codec is the compression asked for pulled batches: "zstd",
	// "deflate", or "none" for plain text [zstd].
	Codec string
	// PullLimit is how many messages one pull asks for [1000].
	PullLimit int
	Dialer    *websocket.Dialer
}

func (o *Options) defaults() {
	if o.SendBackoff.Initial == 0 {
		o.SendBackoff = Backoff{Initial: 500 * time.Millisecond, Factor: 2, Max: 8 * time.Second, Jitter: 0.2}
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.Reconnect.Initial == 0 {
		o.Reconnect = Backoff{Initial: 200 * time.Millisecond, Factor: 2, Max: 5 * time.Second, Jitter: 0.3}
	}
	if o.GapTimeout == 0 {
		o.GapTimeout = 300 * time.Millisecond
	}
	if o.SyncEvery == 0 {
		o.SyncEvery = 30 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.MaxBuffer == 0 {
		o.MaxBuffer = 4096
	}
	if o.Backfill == 0 {
		o.Backfill = 20
	}
	if o.Events == 0 {
		o.Events = 4096
	}
	if o.Codec == "" {
		o.Codec = chat.CodecNameZstd
	}
	if o.Codec == "none" {
		o.Codec = ""
	}
	if o.PullLimit == 0 {
		o.PullLimit = 1000
	}
	if o.Dialer == nil {
		o.Dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
}

// EventType names an Event.
type EventType int

// Events a Client emits.
const (
	EventMessage      EventType = iota + 1 // Msg, in seq order per conversation, once
	EventSent                              // Pending resolved: Msg has its seq
	EventFailed                            // Pending gave up: Err says why
	EventRemoved                           // no longer in Conv (Reason: left, kicked, closed)
	EventReceipt                           // By received Conv up to Seq
	EventConnected                         // a session started
	EventDisconnected                      // the session ended (Code, Err); Retry says whether it will reconnect
	EventSynced                            // positions and unread counts are fresh
	EventDeleted                           // a moderator deleted Conv's message at Seq: stop showing it
)

// Event is what happened.
type Event struct {
	Type   EventType
	Msg    chat.Message
	Conv   string
	Seq    uint64
	By     string
	Reason string
	Code   int
	Retry  bool
	Err    error
}

// ErrSendFailed reports a message given up after MaxAttempts.
var ErrSendFailed = errors.New("chatclient: message not acknowledged")

// ErrClosed reports a closed client.
var ErrClosed = errors.New("chatclient: closed")

// Pending is a message on its way.
type Pending struct {
	ClientMsgID string
	Conv        string
	Body        string

	done     chan struct{}
	seq      uint64
	err      error
	attempts int
	due      time.Time
}

// Done is closed when the message is acknowledged or failed.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result returns the seq once Done, or the error.
func (p *Pending) Result() (uint64, error) {
	<-p.done
	return p.seq, p.err
}

type convState struct {
	buf      *seqbuf.Buffer
	fetching time.Time // a gap fill is in flight since
	maxSeq   uint64
	readSeq  uint64
	acked    uint64 // highest contiguous seq acknowledged to the server
	removed  bool
	// deleted holds seqs deleted before they were delivered: the frame
	// that deletes overtakes a queued chat message on the priority lane.
	deleted map[uint64]bool
}

// Client is a chat connection with reconnects. Safe for concurrent use.
type Client struct {
	opts   Options
	events chan Event

	mu       sync.Mutex
	ws       *websocket.Conn
	live     bool       // the session is set up: hello answered, lobbies rejoined
	wmu      sync.Mutex // serializes writes to ws
	session  string
	user     string
	userID   uint64
	pending  map[string]*Pending
	order    []string // pending ids in send order
	convs    map[string]*convState
	waiters  map[string]chan chat.Frame
	lobbies  map[string]bool // joined; joined again on every new session
	rtt      chat.RTTEstimator
	lastSync time.Time
	stats    Stats

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	connected chan struct{} // closed at the first hello
	connOnce  sync.Once
	closeOnce sync.Once
	fatal     error
	unzip     *chat.Decompressor
}

// Stats counts what the client did.
type Stats struct {
	Duplicates, GapFills, Resends, Reconnects, Failed int
	// Notifies counts notify frames; Pulls the pulls they and gaps caused.
	Notifies, Pulls int
	// Batches counts compressed pages; BatchBytes their bytes on the
	// wire, BatchRaw their bytes once decompressed.
	Batches, BatchBytes, BatchRaw int
}

// Dial connects and returns once the first session is up, ctx ends, or
// the server refuses for good (bad token, bad version).
func Dial(ctx context.Context, o Options) (*Client, error) {
	o.defaults()
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: o, events: make(chan Event, o.Events), pending: map[string]*Pending{},
		convs: map[string]*convState{}, waiters: map[string]chan chat.Frame{}, lobbies: map[string]bool{},
		ctx: cctx, cancel: cancel, connected: make(chan struct{}), unzip: chat.NewDecompressor(),
	}
	c.wg.Add(2)
	go c.run()
	go c.tick()
	select {
	case <-c.connected:
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	case <-cctx.Done():
		c.Close()
		if c.fatal != nil {
			return nil, c.fatal
		}
		return nil, ErrClosed
	}
}

// Events returns the event channel.
func (c *Client) Events() <-chan Event { return c.events }

// User returns the signed-in user's name.
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Stats returns counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// RTT returns the smoothed round trip and the heartbeat interval in use.
func (c *Client) RTT() (srtt, interval time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rtt.SRTT, c.rtt.Interval()
}

// Close stops the client; pending sends fail with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.mu.Lock()
		ws := c.ws
		c.mu.Unlock()
		if ws != nil {
			c.wmu.Lock()
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.wmu.Unlock()
			ws.Close()
		}
		c.wg.Wait()
		c.mu.Lock()
		for id, p := range c.pending {
			p.err = ErrClosed
			close(p.done)
			delete(c.pending, id)
		}
		c.mu.Unlock()
	})
	return nil
}

func (c *Client) emit(e Event) {
	select {
	case c.events <- e:
	case <-c.ctx.Done():
	}
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Client) write(f chat.Frame) error {
	b, err := chat.Encode(f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return errors.New("chatclient: not connected")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return ws.WriteMessage(websocket.TextMessage, b)
}

// Send queues a message to conv. It is sent now if connected and resent
// until the server acknowledges it with a seq, or reported failed.
func (c *Client) Send(conv, body string) *Pending {
	p := &Pending{ClientMsgID: randomID(), Conv: conv, Body: body, done: make(chan struct{})}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		p.err = ErrClosed
		close(p.done)
		return p
	}
	c.pending[p.ClientMsgID] = p
	c.order = append(c.order, p.ClientMsgID)
	p.attempts = 1
	p.due = time.Now().Add(c.opts.SendBackoff.Delay(1))
	live := c.live
	c.mu.Unlock()
	// Before the session is set up again after a reconnect (lobbies
	// rejoined), a send would reach a server that does not know the
	// lobby is ours yet: the hello's resend, or the next retry, sends it.
	if live {
		_ = c.write(chat.Frame{Type: chat.TypeSend, Conv: conv, ClientMsgID: p.ClientMsgID, Body: body})
	}
	return p
}

// request sends f with a fresh ref and waits for the answer with that ref.
func (c *Client) request(ctx context.Context, f chat.Frame) (chat.Frame, error) {
	f.Ref = randomID()
	ch := make(chan chat.Frame, 1)
	c.mu.Lock()
	c.waiters[f.Ref] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, f.Ref)
		c.mu.Unlock()
	}()
	if err := c.write(f); err != nil {
		return chat.Frame{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	select {
	case r := <-ch:
		if r.Type == chat.TypeError {
			return r, fmt.Errorf("chatclient: %s: %s", r.Error.Code, r.Error.Message)
		}
		return r, nil
	case <-ctx.Done():
		return chat.Frame{}, ctx.Err()
	}
}

// Join subscribes to a lobby ("lobby:<name>"); messages after the
// lobby's newest at the time of joining are delivered.
func (c *Client) Join(ctx context.Context, lobby string) error {
	r, err := c.request(ctx, chat.Frame{Type: chat.TypeJoin, Conv: lobby})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.conv(lobby).removed = false
	c.lobbies[lobby] = true
	c.mu.Unlock()
	c.start(lobby, r.Seq)
	return nil
}

// backfillBase is where a conversation new to this client starts.
func (c *Client) backfillBase(top uint64) uint64 {
	if top > uint64(c.opts.Backfill) {
		return top - uint64(c.opts.Backfill)
	}
	return 0
}

// start sets a conversation's position if it has none yet and emits what
// that releases.
func (c *Client) start(conv string, seq uint64) {
	c.mu.Lock()
	st := c.conv(conv)
	var out []chat.Message
	if !st.buf.Known() {
		out = st.buf.Start(seq)
		st.acked = seq
	}
	c.mu.Unlock()
	c.emitMessages(out)
}

func (c *Client) emitMessages(ms []chat.Message) {
	for _, m := range ms {
		c.emit(Event{Type: EventMessage, Msg: m, Conv: m.Conv, Seq: m.Seq})
	}
}

// Leave unsubscribes from a lobby.
func (c *Client) Leave(ctx context.Context, lobby string) error {
	c.mu.Lock()
	delete(c.lobbies, lobby)
	c.mu.Unlock()
	_, err := c.request(ctx, chat.Frame{Type: chat.TypeLeave, Conv: lobby})
	return err
}

// OpenDM returns the direct conversation with username; messages after
// its newest at the time of opening are delivered (older ones: History).
func (c *Client) OpenDM(ctx context.Context, username string) (string, error) {
	r, err := c.request(ctx, chat.Frame{Type: chat.TypeOpenDM, Username: username})
	if err != nil {
		return "", err
	}
	c.start(r.Conv, r.Seq)
	return r.Conv, nil
}

// History returns a page of conv: seqs below before (0: the newest), at
// most limit, oldest first, and whether older ones exist.
func (c *Client) History(ctx context.Context, conv string, before uint64, limit int) ([]chat.Message, bool, error) {
	r, err := c.request(ctx, chat.Frame{Type: chat.TypeHistory, Conv: conv, Before: before, Limit: limit})
	return r.Messages, r.HasMore, err
}

// MarkRead marks conv read up to seq.
func (c *Client) MarkRead(conv string, seq uint64) error {
	c.mu.Lock()
	st := c.conv(conv)
	st.readSeq = max(st.readSeq, seq)
	c.mu.Unlock()
	return c.write(chat.Frame{Type: chat.TypeRead, Conv: conv, Seq: seq})
}

// Unread returns unread counts per conversation (max seq − read seq).
func (c *Client) Unread() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]uint64{}
	for conv, st := range c.convs {
		top := max(st.maxSeq, st.buf.Position())
		if top > st.readSeq {
			out[conv] = top - st.readSeq
		} else {
			out[conv] = 0
		}
	}
	return out
}

// Position returns the highest seq of conv delivered in order.
func (c *Client) Position(conv string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.convs[conv]; ok {
		return st.buf.Position()
	}
	return 0
}

func (c *Client) conv(id string) *convState {
	st, ok := c.convs[id]
	if !ok {
		st = &convState{buf: seqbuf.New(c.opts.MaxBuffer)}
		c.convs[id] = st
	}
	return st
}

// run keeps a session up, reconnecting with backoff.
func (c *Client) run() {
	defer c.wg.Done()
	attempt := 0
	for c.ctx.Err() == nil {
		code, err := c.session1()
		if c.ctx.Err() != nil {
			return
		}
		retry := chat.Retry(code)
		c.emit(Event{Type: EventDisconnected, Code: code, Err: err, Retry: retry})
		if !retry {
			c.fatal = fmt.Errorf("chatclient: server closed the session for good (code %d): %v", code, err)
			c.cancel()
			return
		}
		attempt++
		if code != 0 {
			attempt = min(attempt, 2) // the server was reachable
		}
		c.mu.Lock()
		c.stats.Reconnects++
		c.mu.Unlock()
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.opts.Reconnect.Delay(attempt)):
		}
	}
}

// session1 runs one connection until it ends and returns its close code.
func (c *Client) session1() (int, error) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.opts.Token)
	dctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	ws, resp, err := c.opts.Dialer.DialContext(dctx, c.opts.URL, h)
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return chat.CloseUnauthorized, err
		}
		return 0, err
	}
	ws.SetReadLimit(chat.MaxFrameBytes * 16)
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.ws == ws {
			c.ws, c.live = nil, false
		}
		c.mu.Unlock()
		ws.Close()
	}()
	for {
		_ = ws.SetReadDeadline(time.Now().Add(chat.Deadline(chat.MaxHeartbeat, 0)))
		kind, b, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, err
			}
			return 0, err
		}
		if kind == websocket.BinaryMessage {
			raw, err := c.unzip.Decompress(b)
			if err != nil {
				continue // the gap timer pulls again
			}
			c.mu.Lock()
			c.stats.Batches++
			c.stats.BatchBytes += len(b)
			c.stats.BatchRaw += len(raw)
			c.mu.Unlock()
			b = raw
		}
		f, err := chat.DecodeServer(b)
		if err != nil {
			continue // a newer server may add frames; skip what we cannot read
		}
		c.handle(f)
	}
}

func (c *Client) handle(f chat.Frame) {
	switch f.Type {
	case chat.TypeHello:
		c.onHello(f)
	case chat.TypeSent:
		c.mu.Lock()
		p, ok := c.pending[f.Ref]
		if ok {
			delete(c.pending, f.Ref)
			p.seq = f.Seq
			close(p.done)
			st := c.conv(f.Conv)
			st.maxSeq = max(st.maxSeq, f.Seq)
		}
		c.mu.Unlock()
		if ok {
			c.emit(Event{Type: EventSent, Conv: f.Conv, Seq: f.Seq, Msg: chat.Message{Conv: f.Conv, Seq: f.Seq, ClientMsgID: f.Ref, Body: p.Body}})
		}
	case chat.TypeMsg:
		if f.Msg != nil {
			c.deliver([]chat.Message{*f.Msg})
		}
	case chat.TypePage:
		if c.answer(f) {
			return
		}
		c.onGapPage(f)
	case chat.TypeSynced:
		c.answer(f)
		c.onSynced(f)
	case chat.TypeNotify:
		c.mu.Lock()
		c.stats.Notifies++
		st := c.conv(f.Conv)
		st.maxSeq = max(st.maxSeq, f.Seq)
		fill := st.buf.Known() && f.Seq > st.buf.Position()
		c.mu.Unlock()
		if fill {
			c.fill(f.Conv)
		}
	case chat.TypeRemoved:
		c.answer(f)
		c.mu.Lock()
		c.conv(f.Conv).removed = true
		c.mu.Unlock()
		c.emit(Event{Type: EventRemoved, Conv: f.Conv, Reason: f.Reason})
	case chat.TypeDeleted:
		c.mu.Lock()
		st := c.conv(f.Conv)
		shown := st.buf.Known() && f.Seq <= st.buf.Position()
		if !shown {
			if st.deleted == nil {
				st.deleted = map[uint64]bool{}
			}
			st.deleted[f.Seq] = true
		}
		c.mu.Unlock()
		if shown {
			c.emit(Event{Type: EventDeleted, Conv: f.Conv, Seq: f.Seq})
		}
	case chat.TypeReceipt:
		if f.By != c.User() {
			c.emit(Event{Type: EventReceipt, Conv: f.Conv, Seq: f.Seq, By: f.By})
		}
	case chat.TypePong:
		if f.TS > 0 {
			c.mu.Lock()
			c.rtt.Add(time.Since(time.UnixMilli(f.TS)))
			c.mu.Unlock()
		}
	case chat.TypeJoined:
		c.answer(f)
	case chat.TypeError:
		if c.answer(f) {
			return
		}
		c.onSendError(f)
	}
}

// answer hands a frame to the request waiting for its ref.
func (c *Client) answer(f chat.Frame) bool {
	if f.Ref == "" {
		return false
	}
	c.mu.Lock()
	ch, ok := c.waiters[f.Ref]
	c.mu.Unlock()
	if ok {
		select {
		case ch <- f:
		default:
		}
	}
	return ok
}

func (c *Client) onHello(f chat.Frame) {
	for _, cs := range f.Hello.Convs {
		c.start(cs.Conv, c.backfillBase(cs.MaxSeq))
	}
	c.mu.Lock()
	c.session, c.user, c.userID = f.Hello.Session, f.Hello.User, f.Hello.UserID
	for _, cs := range f.Hello.Convs {
		st := c.conv(cs.Conv)
		st.maxSeq = max(st.maxSeq, cs.MaxSeq)
	}
	positions := map[string]uint64{}
	for conv, st := range c.convs {
		if st.buf.Known() && !st.removed {
			positions[conv] = st.buf.Position()
		}
	}
	var resend []*Pending
	for _, id := range c.order {
		if p, ok := c.pending[id]; ok {
			resend = append(resend, p)
		}
	}
	c.order = c.order[:0]
	for _, p := range resend {
		c.order = append(c.order, p.ClientMsgID)
	}
	c.lastSync = time.Now()
	lobbies := make([]string, 0, len(c.lobbies))
	for l := range c.lobbies {
		lobbies = append(lobbies, l)
	}
	c.mu.Unlock()
	// The server handles a connection's frames in order: lobbies are
	// joined before the sync and the resends that need them.
	for _, l := range lobbies {
		_ = c.write(chat.Frame{Type: chat.TypeJoin, Conv: l})
	}
	_ = c.write(chat.Frame{Type: chat.TypeSync, Positions: positions})
	for _, p := range resend {
		_ = c.write(chat.Frame{Type: chat.TypeSend, Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body})
	}
	c.mu.Lock()
	c.live = true
	c.mu.Unlock()
	c.connOnce.Do(func() { close(c.connected) })
	c.emit(Event{Type: EventConnected})
}

func (c *Client) onSynced(f chat.Frame) {
	var fills []string
	var released []chat.Message
	c.mu.Lock()
	for _, cs := range f.Convs {
		st := c.conv(cs.Conv)
		st.removed = false
		st.maxSeq = max(st.maxSeq, cs.MaxSeq)
		st.readSeq = max(st.readSeq, cs.ReadSeq)
		if !st.buf.Known() {
			base := c.backfillBase(cs.MaxSeq)
			released = append(released, st.buf.Start(base)...)
			st.acked = base // what Start released is acknowledged by the next tick
		}
	}
	c.mu.Unlock()
	c.emitMessages(released)
	for _, cs := range f.Convs {
		c.deliver(cs.Messages)
		c.mu.Lock()
		st := c.conv(cs.Conv)
		if st.maxSeq > st.buf.Position() {
			fills = append(fills, cs.Conv)
		}
		c.mu.Unlock()
	}
	for _, conv := range fills {
		c.fill(conv)
	}
	c.emit(Event{Type: EventSynced})
}

// deliver puts messages through dedupe and the reorder buffer and emits
// what became contiguous.
func (c *Client) deliver(msgs []chat.Message) {
	var out []chat.Message
	var urgent []string
	now := time.Now()
	c.mu.Lock()
	for _, m := range msgs {
		st := c.conv(m.Conv)
		st.maxSeq = max(st.maxSeq, m.Seq)
		if st.deleted[m.Seq] {
			delete(st.deleted, m.Seq)
			m.Kind, m.Body = chat.KindDeleted, ""
		}
		dups := st.buf.Duplicates
		out = append(out, st.buf.Push(m, now)...)
		c.stats.Duplicates += st.buf.Duplicates - dups
		// A critical message pushed past a gap (a storm's messages are
		// pulled, not pushed) is shown in order, so the gap before it
		// is filled now rather than after the gap timeout.
		if m.Critical && st.buf.Known() && m.Seq > st.buf.Position() {
			urgent = append(urgent, m.Conv)
		}
	}
	c.mu.Unlock()
	c.emitMessages(out)
	for _, conv := range urgent {
		c.fill(conv)
	}
}

// fill pulls the messages after the contiguous position of conv. One pull
// per conversation is in flight: notifies that arrive meanwhile only raise
// the known newest seq, and the answer's arrival pulls again while that
// is ahead. Pulls are answered by pages, compressed when large.
func (c *Client) fill(conv string) {
	c.mu.Lock()
	st := c.conv(conv)
	if !st.fetching.IsZero() && time.Since(st.fetching) < c.opts.RequestTimeout {
		c.mu.Unlock()
		return
	}
	st.fetching = time.Now()
	after := st.buf.Position()
	c.stats.Pulls++
	c.mu.Unlock()
	_ = c.write(chat.Frame{Type: chat.TypePull, Conv: conv, After: after, Limit: c.opts.PullLimit, Codec: c.opts.Codec})
}

func (c *Client) onGapPage(f chat.Frame) {
	c.mu.Lock()
	st := c.conv(f.Conv)
	st.fetching = time.Time{}
	before := st.buf.Position()
	c.mu.Unlock()
	c.deliver(f.Messages)
	c.mu.Lock()
	// A page starts at a block boundary and may hold only what we have;
	// pull again only while pulling gets us further.
	advanced := st.buf.Position() > before
	again := f.HasMore && advanced || st.maxSeq > st.buf.Position() && advanced
	c.mu.Unlock()
	if again {
		c.fill(f.Conv)
	}
}

func (c *Client) onSendError(f chat.Frame) {
	c.mu.Lock()
	p, ok := c.pending[f.Ref]
	if !ok {
		c.mu.Unlock()
		return
	}
	switch f.Error.Code {
	case chat.ErrRateLimited, chat.ErrUnavailable:
		p.due = time.Now().Add(c.opts.SendBackoff.Delay(p.attempts))
		c.mu.Unlock()
		return
	}
	delete(c.pending, f.Ref)
	p.err = fmt.Errorf("chatclient: %s: %s", f.Error.Code, f.Error.Message)
	close(p.done)
	c.stats.Failed++
	c.mu.Unlock()
	c.emit(Event{Type: EventFailed, Conv: p.Conv, Err: p.err, Msg: chat.Message{Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body}})
}

// tick resends, fills gaps, acks and pings.
func (c *Client) tick() {
	defer c.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastPing := time.Time{}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var resend []*Pending
		var failed []*Pending
		var gaps []string
		var acks []chat.Frame
		c.mu.Lock()
		connected := c.live
		for id, p := range c.pending {
			if now.Before(p.due) {
				continue
			}
			if p.attempts >= c.opts.MaxAttempts {
				delete(c.pending, id)
				p.err = ErrSendFailed
				c.stats.Failed++
				failed = append(failed, p)
				continue
			}
			if connected {
				p.attempts++
				p.due = now.Add(c.opts.SendBackoff.Delay(p.attempts))
				c.stats.Resends++
				resend = append(resend, p)
			}
		}
		for conv, st := range c.convs {
			if st.buf.GapOpen(now, c.opts.GapTimeout) {
				c.stats.GapFills++
				gaps = append(gaps, conv)
			}
			if pos := st.buf.Position(); pos > st.acked && !st.removed {
				st.acked = pos
				acks = append(acks, chat.Frame{Type: chat.TypeAck, Conv: conv, Seq: pos})
			}
		}
		interval := c.rtt.Interval()
		// A conversation without a position holds its messages until a
		// sync says where it starts for this client.
		waiting := false
		for _, st := range c.convs {
			if !st.buf.Known() && st.buf.Buffered() > 0 {
				waiting = true
			}
		}
		doSync := connected && (now.Sub(c.lastSync) > c.opts.SyncEvery || waiting && now.Sub(c.lastSync) > 300*time.Millisecond)
		positions := map[string]uint64{}
		if doSync {
			c.lastSync = now
			for conv, st := range c.convs {
				if st.buf.Known() && !st.removed {
					positions[conv] = st.buf.Position()
				}
			}
		}
		srtt := c.rtt.SRTT
		c.mu.Unlock()
		sort.Slice(resend, func(i, j int) bool { return resend[i].ClientMsgID < resend[j].ClientMsgID })
		for _, p := range resend {
			_ = c.write(chat.Frame{Type: chat.TypeSend, Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body})
		}
		for _, p := range failed {
			close(p.done)
			c.emit(Event{Type: EventFailed, Conv: p.Conv, Err: p.err, Msg: chat.Message{Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body}})
		}
		for _, conv := range gaps {
			c.fill(conv)
		}
		for _, a := range acks {
			_ = c.write(a)
		}
		if doSync {
			_ = c.write(chat.Frame{Type: chat.TypeSync, Positions: positions})
		}
		if connected && now.Sub(lastPing) >= interval {
			lastPing = now
			_ = c.write(chat.Frame{Type: chat.TypePing, TS: now.UnixMilli(), RTT: int(srtt.Milliseconds()), Interval: int(interval.Milliseconds())})
		}
	}
}

// Package chatclient is the Go SDK of roomnet chat: one WebSocket with
// reconnects and resync, sends that are retried with backoff until the
// server acknowledges them durably (or reported failed, never dropped),
// received messages deduplicated and delivered in seq order per
// conversation with gaps filled from history, unread counts, read
// marking and an adaptive heartbeat. The CLI and tests use it.
//
// Flow control: sends leave in the order given, at most Window of them
// unacknowledged at a time (the rest wait in the queue), paced by token
// buckets within the budgets the server announces in hello (its frame
// budget and the user's send rate), so that a long outbox, a bot or a
// client back from a long disconnect never floods itself off the server.
// A rate_limited answer pauses sending for its retry_after_ms and is not
// a failed attempt; after a reconnect the queue resumes at the paced
// rate. A message is reported failed (EventFailed) only for an error the
// user can act on (too_large, muted, forbidden, invalid…) or once it has
// waited SendTimeout unacknowledged while connected (ErrSendFailed).
// Options.MaxAttempts, which gave up after a number of sends, is ignored
// since this flow control: under load most attempts were the client's own.
package chatclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/seqbuf"
)

// Options configures a Client. Zero values take the defaults in brackets.
type Options struct {
	URL   string // ws:// or wss:// URL of /ws
	Token string

	// SendBackoff spaces resends of a message sent but not answered
	// [Initial 500ms, Factor 2, Max 8s, Jitter 0.2]; it is also the wait
	// after a rate_limited or unavailable answer without retry_after_ms.
	SendBackoff Backoff
	// Window bounds the messages sent and not yet acknowledged; later
	// ones wait in order in the queue [32].
	Window int
	// SendTimeout is how long a message may stay unacknowledged, counting
	// only the time it is in the window while connected, before it is
	// reported failed with ErrSendFailed [2m]. Time spent queued behind
	// the window, disconnected or paused by rate_limited does not count.
	SendTimeout time.Duration
	// MaxAttempts is ignored: sends fail by SendTimeout, not by a count
	// of attempts that were mostly the client's own flooding.
	//
	// Deprecated: use SendTimeout.
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
	// Trace, when set, sees every JSON frame the client sends (sent) and
	// receives (compressed pages once decompressed), from the
	// connection's goroutines; it must not block or keep frame.
	Trace func(sent bool, frame []byte)
}

func (o *Options) defaults() {
	if o.SendBackoff.Initial == 0 {
		o.SendBackoff = Backoff{Initial: 500 * time.Millisecond, Factor: 2, Max: 8 * time.Second, Jitter: 0.2}
	}
	if o.Window <= 0 {
		o.Window = 32
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 2 * time.Minute
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

// ErrSendFailed reports a message given up after SendTimeout.
var ErrSendFailed = errors.New("chatclient: message not acknowledged")

// ErrClosed reports a closed client.
var ErrClosed = errors.New("chatclient: closed")

// Pending is a message on its way.
type Pending struct {
	ClientMsgID string
	Conv        string
	Body        string

	done   chan struct{}
	seq    uint64
	err    error
	final  bool          // acknowledged or failed; under Client.mu
	sent   bool          // sent on this session and not answered yet
	tries  int           // frames sent, all sessions
	due    time.Time     // when sent: resend then without an answer
	waited time.Duration // in the window while connected, unanswered
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

	mu      sync.Mutex
	ws      *websocket.Conn
	live    bool       // the session is set up: hello answered, lobbies rejoined
	wmu     sync.Mutex // serializes writes to ws
	session string
	user    string
	userID  uint64
	pending map[string]*Pending
	queue   []*Pending // in send order; final ones are skipped and compacted away
	queued  int        // pending, not final
	// frames paces every frame within the session's frame budget,
	// sends the messages within the user's send rate; hold pauses
	// sending after rate_limited, holds counts those in a row.
	frames   *rate.Limiter
	sends    *rate.Limiter
	hold     time.Time
	holds    int
	kick     chan struct{} // wakes the sender
	pumpMu   sync.Mutex    // one pump at a time: first sends leave in order
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
	// RateLimited counts rate_limited answers over a budget (the frame
	// budget or the send rate); the client paused after each.
	RateLimited int
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
		kick: make(chan struct{}, 1),
	}
	c.frames, c.sends = c.budgets(nil)
	c.wg.Add(3)
	go c.run()
	go c.tick()
	go c.sender()
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
			p.err, p.final = ErrClosed, true
			close(p.done)
			delete(c.pending, id)
		}
		c.queue, c.queued = nil, 0
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

// write sends f, counting it in the frame budget: it goes now, and
// the sends after it wait for the tokens it took.
func (c *Client) write(f chat.Frame) error { return c.writeFrame(f, true) }

func (c *Client) writeFrame(f chat.Frame, take bool) error {
	b, err := chat.Encode(f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	ws := c.ws
	if take && ws != nil {
		c.frames.ReserveN(time.Now(), 1)
	}
	c.mu.Unlock()
	return c.writeTo(ws, b)
}

// writeTo writes an encoded frame to ws, the session it was meant for.
func (c *Client) writeTo(ws *websocket.Conn, b []byte) error {
	if ws == nil {
		return errors.New("chatclient: not connected")
	}
	if c.opts.Trace != nil {
		c.opts.Trace(true, b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return ws.WriteMessage(websocket.TextMessage, b)
}

// Send queues a message to conv. It leaves in order, within the window
// and the announced budgets, and is resent until the server acknowledges
// it with a seq, or reported failed (see the package doc).
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
	c.queue = append(c.queue, p)
	c.queued++
	c.mu.Unlock()
	c.wake()
	return p
}

// Queued returns how many messages are neither acknowledged nor failed.
func (c *Client) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

// Pacing margins: a client keeps below the announced budgets so that
// network jitter bunching its frames does not take the server's bucket
// below zero.
const (
	paceRate  = 0.8 // of the announced per-second rates
	paceBurst = 0.5 // of the announced bursts
)

// budgets returns the frame and send buckets for hello h (nil: the
// protocol's defaults, until a hello says otherwise).
func (c *Client) budgets(h *chat.Hello) (frames, sends *rate.Limiter) {
	fps, fburst, sps, sburst := 50.0, 100, 10.0, 20
	if h != nil {
		if h.FramesPerSec > 0 {
			fps, fburst = h.FramesPerSec, max(h.FramesBurst, 1)
		}
		if h.SendPerSec > 0 {
			sps, sburst = float64(h.SendPerSec), max(h.SendBurst, 1)
		}
	}
	burst := func(b int) int { return max(int(float64(b)*paceBurst), 1) }
	return rate.NewLimiter(rate.Limit(fps*paceRate), burst(fburst)), rate.NewLimiter(rate.Limit(sps*paceRate), burst(sburst))
}

// wake makes the sender look at the queue now.
func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// sender sends the queue as the window, the budgets and pauses allow.
func (c *Client) sender() {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
		wait := c.pump(time.Now())
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// pump sends what may leave now: the first Window unanswered messages
// that are unsent on this session or due for a resend, in order, while
// both buckets hold a token. It returns when to look again.
func (c *Client) pump(now time.Time) time.Duration {
	c.pumpMu.Lock()
	defer c.pumpMu.Unlock()
	const idle = 50 * time.Millisecond
	var out []*Pending
	wait := idle
	c.mu.Lock()
	// The session the sends are counted for: a new one sends them again
	// after its joins and sync, never before.
	ws := c.ws
	switch {
	case !c.live:
	case now.Before(c.hold):
		wait = c.hold.Sub(now)
	default:
		c.compact()
		n := 0
		for _, p := range c.queue {
			if p.final {
				continue
			}
			if n++; n > c.opts.Window {
				break
			}
			if p.sent && now.Before(p.due) {
				wait = min(wait, p.due.Sub(now))
				continue
			}
			if c.frames.TokensAt(now) < 1 || c.sends.TokensAt(now) < 1 {
				wait = min(wait, max(tokenWait(c.frames, now), tokenWait(c.sends, now)))
				break
			}
			c.frames.AllowN(now, 1)
			c.sends.AllowN(now, 1)
			if p.tries > 0 {
				c.stats.Resends++
			}
			p.tries++
			p.sent = true
			p.due = now.Add(c.opts.SendBackoff.Delay(p.tries))
			out = append(out, p)
		}
	}
	c.mu.Unlock()
	for _, p := range out {
		if b, err := chat.Encode(chat.Frame{Type: chat.TypeSend, Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body}); err == nil {
			_ = c.writeTo(ws, b)
		}
	}
	return max(wait, time.Millisecond)
}

// tokenWait is how long until l holds a token.
func tokenWait(l *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - l.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(l.Limit()) * float64(time.Second))
}

// compact drops final messages from the queue: from its front always,
// everywhere once they are most of it. Under c.mu.
func (c *Client) compact() {
	i := 0
	for i < len(c.queue) && c.queue[i].final {
		i++
	}
	c.queue = c.queue[i:]
	if len(c.queue) > 64 && len(c.queue) > 2*c.queued {
		kept := make([]*Pending, 0, c.queued)
		for _, p := range c.queue {
			if !p.final {
				kept = append(kept, p)
			}
		}
		c.queue = kept
	}
}

// resolve takes p out of the queue with its result. Under c.mu; the
// caller closes p.done after unlocking (or before: nothing waits on mu).
func (c *Client) resolve(p *Pending, seq uint64, err error) {
	delete(c.pending, p.ClientMsgID)
	p.final, p.seq, p.err = true, seq, err
	c.queued--
	if err != nil {
		c.stats.Failed++
	}
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

// HistoryAfter returns a page of conv read forwards: seqs above after
// (0: from the first message), at most limit, oldest first, and whether
// newer ones exist.
func (c *Client) HistoryAfter(ctx context.Context, conv string, after uint64, limit int) ([]chat.Message, bool, error) {
	r, err := c.request(ctx, chat.Frame{Type: chat.TypeHistory, Conv: conv, After: after, HasAfter: true, Limit: limit})
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
		if c.opts.Trace != nil {
			c.opts.Trace(false, b)
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
			c.resolve(p, f.Seq, nil)
			close(p.done)
			c.holds = 0
			st := c.conv(f.Conv)
			st.maxSeq = max(st.maxSeq, f.Seq)
		}
		c.mu.Unlock()
		if ok {
			c.wake() // the window moved
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
		if f.Error != nil && f.Error.Code == chat.ErrRateLimited && c.overBudget(f) {
			c.slowDown(f)
		}
		if c.answer(f) {
			return
		}
		if f.Ref == chat.TypePull && f.Conv != "" {
			// A refused pull: the next notify or gap timeout pulls again.
			c.mu.Lock()
			c.conv(f.Conv).fetching = time.Time{}
			c.mu.Unlock()
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
	first := c.session == ""
	c.session, c.user, c.userID = f.Hello.Session, f.Hello.User, f.Hello.UserID
	for _, cs := range f.Hello.Convs {
		st := c.conv(cs.Conv)
		st.maxSeq = max(st.maxSeq, cs.MaxSeq)
		st.readSeq = max(st.readSeq, cs.ReadSeq)
	}
	positions := map[string]uint64{}
	for conv, st := range c.convs {
		if st.buf.Known() && !st.removed {
			positions[conv] = st.buf.Position()
		}
	}
	// A new session: its own frame budget, and every unanswered message
	// is sent again, in order, at the paced rate.
	frames, sends := c.budgets(f.Hello)
	c.frames = frames
	if first {
		c.sends = sends // the user's send rate outlives a session: kept after
	} else {
		c.sends.SetLimit(sends.Limit())
		c.sends.SetBurst(sends.Burst())
	}
	c.hold, c.holds = time.Time{}, 0
	for _, p := range c.queue {
		p.sent = false
	}
	c.lastSync = time.Now()
	lobbies := make([]string, 0, len(c.lobbies))
	for l := range c.lobbies {
		lobbies = append(lobbies, l)
	}
	c.mu.Unlock()
	// The server handles a connection's frames in order: lobbies are
	// joined before the sync and the sends that need them, which wait
	// for live.
	for _, l := range lobbies {
		_ = c.write(chat.Frame{Type: chat.TypeJoin, Conv: l})
	}
	_ = c.write(chat.Frame{Type: chat.TypeSync, Positions: positions})
	c.mu.Lock()
	c.live = true
	c.mu.Unlock()
	c.wake()
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

// overBudget reports whether a rate_limited answer is about a budget
// (the frame budget or the send rate), which the server answers with a
// retry hint, or a send's refusal: not the cap on pull answers waiting,
// which concerns pulls only.
func (c *Client) overBudget(f chat.Frame) bool {
	if f.Error.RetryAfterMS > 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, send := c.pending[f.Ref]
	return send
}

// slowDown pauses sending after a rate_limited answer over a budget:
// for its retry_after_ms, or the send backoff of the answers in a row
// without one.
func (c *Client) slowDown(f chat.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.RateLimited++
	c.holds++
	d := c.opts.SendBackoff.Delay(c.holds)
	if ms := f.Error.RetryAfterMS; ms > 0 {
		d = time.Duration(ms) * time.Millisecond
	}
	if until := time.Now().Add(d); until.After(c.hold) {
		c.hold = until
	}
}

func (c *Client) onSendError(f chat.Frame) {
	c.mu.Lock()
	p, ok := c.pending[f.Ref]
	if !ok || f.Error == nil {
		c.mu.Unlock()
		return
	}
	switch f.Error.Code {
	case chat.ErrRateLimited, chat.ErrUnavailable:
		// Not a failed attempt: sent again once the pause (slowDown) or
		// the hint is over.
		d := c.opts.SendBackoff.Delay(max(p.tries, 1))
		if ms := f.Error.RetryAfterMS; ms > 0 {
			d = time.Duration(ms) * time.Millisecond
		}
		p.sent, p.due = true, time.Now().Add(d)
		c.mu.Unlock()
		return
	}
	c.resolve(p, 0, fmt.Errorf("chatclient: %s: %s", f.Error.Code, f.Error.Message))
	close(p.done)
	c.mu.Unlock()
	c.wake()
	c.emit(Event{Type: EventFailed, Conv: p.Conv, Err: p.err, Msg: chat.Message{Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body}})
}

// ackEvery spaces acks of one conversation: they are cumulative, and
// one per tick of a busy conversation would spend the frame budget.
const ackEvery = 200 * time.Millisecond

// tick times out sends, fills gaps, acks and pings.
func (c *Client) tick() {
	defer c.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastPing, lastTick, lastAck := time.Time{}, time.Now(), time.Time{}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var failed []*Pending
		var gaps []string
		var acks []chat.Frame
		c.mu.Lock()
		connected := c.live
		if connected {
			// The SendTimeout clock runs for messages in the window, sent
			// and unanswered, while connected and not paused.
			n, dt := 0, now.Sub(lastTick)
			for _, p := range c.queue {
				if p.final {
					continue
				}
				if n++; n > c.opts.Window {
					break
				}
				if !p.sent || now.Before(c.hold) {
					continue
				}
				if p.waited += dt; p.waited >= c.opts.SendTimeout {
					c.resolve(p, 0, ErrSendFailed)
					failed = append(failed, p)
				}
			}
		}
		lastTick = now
		ackNow := connected && now.Sub(lastAck) >= ackEvery
		if ackNow {
			lastAck = now
		}
		for conv, st := range c.convs {
			if st.buf.GapOpen(now, c.opts.GapTimeout) {
				c.stats.GapFills++
				gaps = append(gaps, conv)
			}
			if pos := st.buf.Position(); ackNow && pos > st.acked && !st.removed && c.frames.AllowN(now, 1) {
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
		for _, p := range failed {
			close(p.done)
			c.emit(Event{Type: EventFailed, Conv: p.Conv, Err: p.err, Msg: chat.Message{Conv: p.Conv, ClientMsgID: p.ClientMsgID, Body: p.Body}})
		}
		for _, conv := range gaps {
			c.fill(conv)
		}
		for _, a := range acks {
			_ = c.writeFrame(a, false)
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

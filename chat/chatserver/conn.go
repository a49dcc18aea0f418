package chatserver

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/roomnet/roomnet/chat"
)

// conn is one client connection. Its reader runs in the HTTP handler's
// goroutine. Outgoing frames wait in three bounded queues, written in this
// order: a priority lane (answers, system and critical messages,
// receipts, notifies), the pull answers (at most pullsInFlight pages, so a
// critical message never waits behind a batch of chat) and a bulk lane
// (chat messages); a writer goroutine exists only while there is
// something to write, and writes what is queued in one go through a
// pooled buffer, so an idle connection holds no writer, no buffer and no
// queue. A full bulk lane is dropped and replaced by notifies so the
// client pulls what it missed; a full priority lane disconnects.
type conn struct {
	env     *connEnv
	ws      *websocket.Conn
	nc      *flushConn
	user    User
	session string
	group   uint8 // its notify group in storms

	qmu       sync.Mutex
	prio      []outFrame
	paged     []outFrame // pull answers
	bulk      []outFrame
	writing   bool            // a writer goroutine is running
	dead      bool            // shut down: nothing is queued any more
	notifying map[string]bool // a notify for this conversation is queued
	pulls     int             // pull answers queued
	writers   sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{}

	frames  *rate.Limiter
	strikes *rate.Limiter // refused frames forgiven over time; reader goroutine only

	// loading: its rooms are being loaded; lost holds the rooms it left
	// meanwhile. Both under the hub's lock.
	loading bool
	lost    map[string]bool

	mu       sync.Mutex
	convs    map[string]bool // conversations this connection may use
	lobbies  int
	rtt      time.Duration
	interval time.Duration
}

// connEnv is what a connection needs of its node, shared by all of them.
type connEnv struct {
	priorityLane, bulkLane  int
	writeTimeout            time.Duration
	log                     *slog.Logger
	slowClosed, bulkDropped prometheus.Counter
}

type outFrame struct {
	prepared *websocket.PreparedMessage
	data     []byte
	conv     string // bulk: the message's conversation; notify: its conversation
	seq      uint64 // bulk: the message's seq
	notify   bool
	pull     bool // answers a pull
}

// writeBatch is how many frames a writer takes from the queues at once;
// they leave in as few writes as the buffer allows.
const writeBatch = 64

func (c *conn) can(conv string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.convs[conv]
}

func (c *conn) allow(conv string) {
	c.mu.Lock()
	c.convs[conv] = true
	c.mu.Unlock()
}

// allowUpTo allows conv unless that would make more than limit
// conversations; it reports whether conv is allowed.
func (c *conn) allowUpTo(conv string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.convs[conv] && len(c.convs) >= limit {
		return false
	}
	c.convs[conv] = true
	return true
}

// revoke removes conv and reports whether it was there.
func (c *conn) revoke(conv string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	had := c.convs[conv]
	delete(c.convs, conv)
	return had
}

func (c *conn) convList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.convs))
	for k := range c.convs {
		out = append(out, k)
	}
	return out
}

// startLocked makes sure a writer runs. c.qmu is held.
func (c *conn) startLocked() {
	if !c.writing {
		c.writing = true
		c.writers.Add(1)
		go c.drain()
	}
}

// sendPriority queues a frame on the priority lane; a client that cannot
// even take those is disconnected.
func (c *conn) sendPriority(f outFrame) {
	c.qmu.Lock()
	if c.dead {
		c.qmu.Unlock()
		return
	}
	if len(c.prio) >= c.env.priorityLane {
		c.qmu.Unlock()
		c.env.slowClosed.Inc()
		// Not inline: the caller may be fanning out to thousands.
		go c.shutdown(chat.CloseSlowConsumer, "too slow for critical frames")
		return
	}
	c.prio = append(c.prio, f)
	c.startLocked()
	c.qmu.Unlock()
}

// sendPage queues a pull answer; reservePull bounds how many wait.
func (c *conn) sendPage(f outFrame) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.dead {
		return
	}
	c.paged = append(c.paged, f)
	c.startLocked()
}

// sendFrame encodes and queues a frame on the priority lane.
func (c *conn) sendFrame(f chat.Frame) {
	b, err := chat.Encode(f)
	if err != nil {
		c.env.log.Error("encoding frame", "type", f.Type, "err", err)
		return
	}
	c.sendPriority(outFrame{data: b})
}

func (c *conn) sendError(ref, code, msg string) {
	c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: ref, Error: &chat.ErrorDetail{Code: code, Message: msg}})
}

// fail answers frame f with an error that names what it answers: the ref
// of f (a send's client_msg_id; "pull" for a pull without a ref) and its
// conversation.
func (c *conn) fail(f chat.Frame, code, msg string) {
	c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: answerRef(f), Conv: f.Conv, Error: &chat.ErrorDetail{Code: code, Message: msg}})
}

// answerRef is the ref of the frames answering f.
func answerRef(f chat.Frame) string {
	switch {
	case f.Type == chat.TypeSend && f.ClientMsgID != "":
		return f.ClientMsgID
	case f.Ref != "":
		return f.Ref
	case f.Type == chat.TypePull:
		return chat.TypePull
	}
	return ""
}

// sendBulk queues a chat message. When the bulk lane is full, everything
// queued there is dropped and each conversation it held gets one notify,
// so memory stays bounded and the client pulls what it missed.
func (c *conn) sendBulk(f outFrame) {
	c.qmu.Lock()
	if c.dead {
		c.qmu.Unlock()
		return
	}
	if len(c.bulk) < c.env.bulkLane {
		c.bulk = append(c.bulk, f)
		c.startLocked()
		c.qmu.Unlock()
		return
	}
	newest := map[string]uint64{f.conv: f.seq}
	for _, q := range c.bulk {
		newest[q.conv] = max(newest[q.conv], q.seq)
	}
	dropped := len(c.bulk) + 1
	c.bulk = nil
	c.qmu.Unlock()
	c.env.bulkDropped.Add(float64(dropped))
	for conv, seq := range newest {
		b, err := chat.Encode(chat.Frame{Type: chat.TypeNotify, Conv: conv, Seq: seq})
		if err == nil {
			c.sendNotify(outFrame{data: b, conv: conv, seq: seq, notify: true})
		}
	}
}

// sendNotify queues a notify unless one for the same conversation is
// already waiting: the client pulls everything after its position
// whatever seq the notify names.
func (c *conn) sendNotify(f outFrame) {
	c.qmu.Lock()
	if c.dead || c.notifying[f.conv] {
		c.qmu.Unlock()
		return
	}
	if c.notifying == nil {
		c.notifying = map[string]bool{}
	}
	c.notifying[f.conv] = true
	c.qmu.Unlock()
	c.sendPriority(f)
}

// reservePull counts a pull answer against the connection's limit.
func (c *conn) reservePull(limit int) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.pulls >= limit {
		return false
	}
	c.pulls++
	return true
}

// releasePull gives back a reservation whose answer was never queued.
func (c *conn) releasePull() {
	c.qmu.Lock()
	c.pulls--
	c.qmu.Unlock()
}

// take moves up to len(buf) frames out of the queues, priority first.
func (c *conn) take(buf []outFrame) int {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.dead {
		c.prio, c.paged, c.bulk = nil, nil, nil
		c.writing = false
		return 0
	}
	n := copy(buf, c.prio)
	c.prio = shift(c.prio, n)
	p := copy(buf[n:], c.paged)
	c.paged = shift(c.paged, p)
	n += p
	m := copy(buf[n:], c.bulk)
	c.bulk = shift(c.bulk, m)
	for _, f := range buf[:n+m] {
		if f.notify {
			delete(c.notifying, f.conv)
		}
		if f.pull {
			c.pulls--
		}
	}
	if n+m == 0 {
		c.writing = false
	}
	return n + m
}

// shift drops the first n frames, releasing the array once it is empty
// so that an idle connection holds none.
func shift(q []outFrame, n int) []outFrame {
	if n == len(q) {
		return nil
	}
	rest := copy(q, q[n:])
	clear(q[rest:])
	return q[:rest]
}

// drain writes until the queues are empty, then exits.
func (c *conn) drain() {
	defer c.writers.Done()
	var buf [writeBatch]outFrame
	for {
		n := c.take(buf[:])
		if n == 0 {
			return
		}
		c.nc.begin()
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.env.writeTimeout))
		var err error
		for _, f := range buf[:n] {
			switch {
			case f.prepared != nil:
				err = c.ws.WritePreparedMessage(f.prepared)
			default:
				err = c.ws.WriteMessage(websocket.TextMessage, f.data)
			}
			if err != nil {
				break
			}
		}
		if ferr := c.nc.end(); err == nil {
			err = ferr
		}
		clear(buf[:n])
		if err != nil {
			c.qmu.Lock()
			c.writing = false
			c.qmu.Unlock()
			go c.shutdown(chat.ClosePolicy, "write failed")
			return
		}
	}
}

// shutdown closes the connection with a close code; safe from any goroutine.
func (c *conn) shutdown(code int, reason string) {
	c.closeOnce.Do(func() {
		c.qmu.Lock()
		c.dead = true
		c.prio, c.paged, c.bulk = nil, nil, nil
		c.qmu.Unlock()
		close(c.closed)
		// A writer blocked on a client that does not read gives up now.
		_ = c.nc.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		// Not closed here: closing a socket with unread input resets it,
		// and the reset can overtake the close frame (the client sees
		// 1006, not the reason). The reader stops handling frames,
		// discards input until the client answers the close or
		// closeLinger passes (linger), then closes.
		_ = c.nc.Conn.SetReadDeadline(time.Now().Add(closeLinger))
	})
}

// closeLinger bounds how long a closed connection's input is discarded
// while its close frame reaches the client.
const closeLinger = time.Second

// linger discards input until the client closes or the read deadline
// set by shutdown passes. Reader goroutine only, after shutdown.
func (c *conn) linger() {
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			return
		}
	}
}

// flushConn is the network connection under a WebSocket. While a writer
// drains the queues, frames collect in a pooled buffer and leave in as
// few writes as possible; otherwise writes (close and pong frames) go
// straight through.
type flushConn struct {
	net.Conn
	pool *sync.Pool

	mu sync.Mutex
	w  *bufio.Writer
}

func (f *flushConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.w != nil {
		return f.w.Write(p)
	}
	return f.Conn.Write(p)
}

func (f *flushConn) begin() {
	f.mu.Lock()
	f.w = f.pool.Get().(*bufio.Writer)
	f.w.Reset(f.Conn)
	f.mu.Unlock()
}

func (f *flushConn) end() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.w.Flush()
	f.w.Reset(nil)
	f.pool.Put(f.w)
	f.w = nil
	return err
}

// hijacker hands gorilla a flushConn in place of the raw connection.
type hijacker struct {
	http.ResponseWriter
	pool *sync.Pool
	nc   *flushConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	raw, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.nc = &flushConn{Conn: raw, pool: h.pool}
	return h.nc, brw, nil
}

package chatserver

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
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
	s       *Server
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

	frames     *rate.Limiter
	violations int // reader goroutine only

	mu       sync.Mutex
	convs    map[string]bool // conversations this connection may use
	lobbies  int
	rtt      time.Duration
	interval time.Duration
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
	if len(c.prio) >= c.s.opts.PriorityLane {
		c.qmu.Unlock()
		c.s.metrics.slowClosed.Inc()
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
		c.s.log.Error("encoding frame", "type", f.Type, "err", err)
		return
	}
	c.sendPriority(outFrame{data: b})
}

func (c *conn) sendError(ref, code, msg string) {
	c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: ref, Error: &chat.ErrorDetail{Code: code, Message: msg}})
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
	if len(c.bulk) < c.s.opts.BulkLane {
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
	c.s.metrics.bulkDropped.Add(float64(dropped))
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
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
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
		_ = c.ws.Close()
	})
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

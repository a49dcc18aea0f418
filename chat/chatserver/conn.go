package chatserver

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/roomnet/roomnet/chat"
)

// conn is one client connection. Its reader runs in the HTTP handler's
// goroutine; one writer goroutine owns the socket's writes, fed by a
// priority lane (answers, system messages, receipts, notifies) and a bulk
// lane (chat messages). A full bulk lane drops the message and queues a
// notify so the client pulls it; a full priority lane disconnects.
type conn struct {
	s       *Server
	ws      *websocket.Conn
	user    User
	session string

	prio chan outFrame
	bulk chan outFrame

	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{} // writer exited

	frames     *rate.Limiter
	violations int // reader goroutine only

	mu        sync.Mutex
	convs     map[string]bool // conversations this connection may use
	lobbies   int
	notifying map[string]bool // a notify is queued for this conversation
	rtt       time.Duration
	interval  time.Duration
}

type outFrame struct {
	prepared   *websocket.PreparedMessage
	data       []byte
	notifyConv string // a notify for this conversation leaves the queue
}

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

// sendPriority queues a frame on the priority lane; a client that cannot
// even take those is disconnected.
func (c *conn) sendPriority(f outFrame) {
	select {
	case c.prio <- f:
	case <-c.closed:
	default:
		c.s.metrics.slowClosed.Inc()
		c.shutdown(chat.CloseSlowConsumer, "too slow for critical frames")
	}
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

// sendBulk queues a chat message; when the bulk lane is full the message
// is dropped and a notify tells the client to pull.
func (c *conn) sendBulk(f outFrame, conv string, seq uint64) {
	select {
	case c.bulk <- f:
		return
	case <-c.closed:
		return
	default:
	}
	c.s.metrics.bulkDropped.Inc()
	c.mu.Lock()
	already := c.notifying[conv]
	c.notifying[conv] = true
	c.mu.Unlock()
	if !already {
		b, err := chat.Encode(chat.Frame{Type: chat.TypeNotify, Conv: conv, Seq: seq})
		if err == nil {
			c.sendPriority(outFrame{data: b, notifyConv: conv})
		}
	}
}

func (c *conn) writeLoop() {
	defer close(c.done)
	for {
		var f outFrame
		select {
		case f = <-c.prio:
		default:
			select {
			case f = <-c.prio:
			case f = <-c.bulk:
			case <-c.closed:
				return
			}
		}
		if f.notifyConv != "" {
			c.mu.Lock()
			delete(c.notifying, f.notifyConv)
			c.mu.Unlock()
		}
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		var err error
		if f.prepared != nil {
			err = c.ws.WritePreparedMessage(f.prepared)
		} else {
			err = c.ws.WriteMessage(websocket.TextMessage, f.data)
		}
		if err != nil {
			c.shutdown(chat.ClosePolicy, "write failed")
			return
		}
	}
}

// shutdown closes the connection with a close code; safe from any goroutine.
func (c *conn) shutdown(code int, reason string) {
	c.closeOnce.Do(func() {
		close(c.closed)
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		_ = c.ws.Close()
	})
}

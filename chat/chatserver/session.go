package chatserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/roomnet/roomnet/chat"
)

// A session: its start (hello), its reader and the frames it handles
// itself; sends, reads and pulls have files of their own.

// serve runs a session; release is called once when it ends.
func (s *Server) serve(ctx context.Context, ws *websocket.Conn, nc *flushConn, user User, release func()) {
	c := &conn{
		env: s.connEnv, ws: ws, nc: nc, user: user, session: newSession(), group: uint8(s.connSeq.Add(1) % notifyGroups),
		closed:  make(chan struct{}),
		frames:  rate.NewLimiter(rate.Limit(s.opts.FramesPerSec), s.opts.FramesBurst),
		strikes: rate.NewLimiter(rate.Every(s.opts.ViolationEvery), s.opts.MaxViolations),
		convs:   map[string]bool{},
	}
	// Registered before its rooms are loaded, so that no membership
	// event can fall between the load and the registration: the events
	// that arrive while loading are recorded and win over the load.
	if !s.hub.register(c) {
		closeNow(ws, chat.CloseShutdown, "server shutting down")
		release()
		return
	}
	// register counted the session in the hub; the reader goroutine or
	// the failure below gives it back.
	fail := func(text string, err error) {
		s.log.Error("starting a chat session", "user", user.Name, "err", err)
		c.shutdown(chat.CloseShutdown, text)
		_ = c.ws.Close()
		c.writers.Wait()
		s.hub.unregister(c)
		s.dl.remove(c)
		release()
		s.hub.done()
	}
	rooms, err := s.dir.RoomsOf(ctx, user.ID)
	if s.opts.roomsLoaded != nil {
		s.opts.roomsLoaded()
	}
	if err != nil {
		fail("try again", fmt.Errorf("loading rooms: %w", err))
		return
	}
	s.hub.loaded(c, rooms)
	s.arm(c, s.opts.Deadline(chat.MaxHeartbeat, 0))
	// Newest seqs after subscribing: everything above them is pushed.
	convs := c.convList()
	tops, err := s.store.MaxSeqs(ctx, convs)
	if err != nil {
		fail("storage unavailable; try again", err)
		return
	}
	cursors, err := s.cursors.of(ctx, user.ID)
	if err != nil {
		fail("storage unavailable; try again", err)
		return
	}
	states := make([]chat.ConvState, len(convs))
	for i, conv := range convs {
		states[i] = convState(conv, tops[conv], cursors[conv].Read)
	}
	c.sendFrame(chat.Frame{Type: chat.TypeHello, Hello: &chat.Hello{
		Session: c.session, User: user.Name, UserID: user.ID,
		MinIntervalMS: int(chat.MinHeartbeat.Milliseconds()), MaxIntervalMS: int(chat.MaxHeartbeat.Milliseconds()),
		MaxBody: s.opts.MaxBody, SendPerSec: int(s.opts.SendPerSec), SendBurst: s.opts.SendBurst,
		FramesPerSec: s.opts.FramesPerSec, FramesBurst: s.opts.FramesBurst, Convs: states,
	}})
	// The handler returns and takes its deep stack and the HTTP server's
	// buffers with it; a fresh goroutine with a shallow stack reads.
	go func() {
		defer s.hub.done()
		s.readLoop(context.Background(), c)
		c.shutdown(websocket.CloseNormalClosure, "")
		c.linger()
		_ = c.ws.Close()
		c.writers.Wait()
		s.hub.unregister(c)
		s.dl.remove(c)
		release()
	}()
}

// arm sets c's one deadline: d from now for the next frame, or the
// expiry of its token if that comes first. Both live in the deadline
// heap; its expire callback tells them apart.
func (s *Server) arm(c *conn, d time.Duration) {
	at := time.Now().Add(d)
	if exp := c.user.Expires; !exp.IsZero() && exp.Before(at) {
		at = exp
	}
	s.dl.set(c, at)
}

// convState is a conversation's newest seq, read position and unread
// count (max_seq − read_seq, never negative).
func convState(conv string, top, read uint64) chat.ConvState {
	st := chat.ConvState{Conv: conv, MaxSeq: top, ReadSeq: read}
	if top > read {
		st.Unread = top - read
	}
	return st
}

func (s *Server) readLoop(ctx context.Context, c *conn) {
	for {
		_, b, err := c.ws.ReadMessage()
		select {
		case <-c.closed:
			return // shut down: nothing more is handled
		default:
		}
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
		s.arm(c, deadline)
		if now := time.Now(); !c.frames.AllowN(now, 1) {
			if s.violation(c, chat.Peek(b), chat.ErrRateLimited, "too many frames; slow down", retryAfter(c.frames, now)) {
				return
			}
			continue
		}
		f, err := chat.Decode(b)
		if err != nil {
			if s.violation(c, chat.Peek(b), chat.ErrBadFrame, err.Error(), 0) {
				return
			}
			continue
		}
		if f.V != chat.Version {
			c.shutdown(chat.CloseBadVersion, fmt.Sprintf("protocol version %d not supported; want %d", f.V, chat.Version))
			return
		}
		if !chat.ValidText(b) {
			c.fail(f, chat.ErrInvalid, "text must be UTF-8 (no lone surrogates)")
			continue
		}
		s.metrics.framesIn.WithLabelValues(frameLabel(f.Type)).Inc()
		s.handle(ctx, c, f)
	}
}

// violation answers an error (with a retry hint when after > 0) and
// reports whether the client has now misbehaved often enough to be
// disconnected: more than MaxViolations refused frames at once, one
// forgiven every ViolationEvery.
func (s *Server) violation(c *conn, f chat.Frame, code, msg string, after time.Duration) bool {
	s.metrics.violations.Inc()
	if !c.strikes.Allow() {
		c.shutdown(chat.ClosePolicy, "too many bad or excess frames")
		return true
	}
	failAfter(c, f, code, msg, after)
	return false
}

// failAfter answers f with an error that tells the client to wait after
// (rounded up to a millisecond) before sending again; 0: no hint.
func failAfter(c *conn, f chat.Frame, code, msg string, after time.Duration) {
	d := &chat.ErrorDetail{Code: code, Message: msg}
	if after > 0 {
		d.RetryAfterMS = int64((after + time.Millisecond - 1) / time.Millisecond)
	}
	c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: answerRef(f), Conv: f.Conv, Error: d})
}

// retryAfter is how long until l has a token again, at least 1 ms.
func retryAfter(l *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - l.TokensAt(now)
	if missing <= 0 || l.Limit() <= 0 {
		return time.Millisecond
	}
	return max(time.Duration(missing/float64(l.Limit())*float64(time.Second)), time.Millisecond)
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
		s.handleCursor(ctx, c, f)
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
		s.arm(c, deadline)
		c.sendFrame(chat.Frame{Type: chat.TypePong, Ref: f.Ref, TS: f.TS, ServerTS: time.Now().UnixMilli()})
	case chat.TypeSync:
		s.handleSync(ctx, c, f)
	case chat.TypeJoin:
		s.handleJoin(c, f)
	case chat.TypeLeave:
		if kind, _ := chat.ConvKind(f.Conv); kind != chat.KindLobby {
			c.fail(f, chat.ErrInvalid, "only lobbies are left this way; leave rooms through the API")
			return
		}
		if c.revoke(f.Conv) {
			c.mu.Lock()
			c.lobbies--
			c.mu.Unlock()
			s.hub.unsubscribe(c, f.Conv)
		}
		c.sendFrame(chat.Frame{Type: chat.TypeRemoved, Ref: f.Ref, Conv: f.Conv, Reason: "left"})
	case chat.TypeOpenDM:
		s.handleOpenDM(ctx, c, f)
	case chat.TypeAuth:
		c.fail(f, chat.ErrInvalid, "already authenticated")
	default:
		_ = s.violation(c, f, chat.ErrBadFrame, fmt.Sprintf("unknown frame type %q", f.Type), 0)
	}
}

func (s *Server) handleJoin(c *conn, f chat.Frame) {
	switch kind, ok := chat.ConvKind(f.Conv); {
	case !ok:
		c.fail(f, chat.ErrInvalid, "join takes a lobby (lobby:<name>)")
		return
	case kind == chat.KindRoom && !c.can(f.Conv):
		c.fail(f, chat.ErrForbidden, "not a member of "+f.Conv+"; rooms are joined through the REST API")
		return
	case kind == chat.KindRoom:
		s.answerJoined(c, f) // already in it
		return
	case kind == chat.KindDirect:
		c.fail(f, chat.ErrInvalid, "direct conversations are opened with open_dm")
		return
	}
	c.mu.Lock()
	if !c.convs[f.Conv] {
		if c.lobbies >= s.opts.MaxLobbies {
			c.mu.Unlock()
			c.fail(f, chat.ErrTooMany, fmt.Sprintf("at most %d lobbies per connection", s.opts.MaxLobbies))
			return
		}
		c.lobbies++
		c.convs[f.Conv] = true
	}
	c.mu.Unlock()
	s.hub.subscribe(c, f.Conv)
	s.answerJoined(c, f)
}

// answerJoined answers a join with the conversation's newest seq after
// subscribing: everything above it is pushed.
func (s *Server) answerJoined(c *conn, f chat.Frame) {
	top, err := s.store.MaxSeq(context.Background(), f.Conv)
	if err != nil {
		c.fail(f, chat.ErrUnavailable, "join unavailable; retry")
		return
	}
	c.sendFrame(chat.Frame{Type: chat.TypeJoined, Ref: f.Ref, Conv: f.Conv, Seq: top})
}

func (s *Server) handleOpenDM(ctx context.Context, c *conn, f chat.Frame) {
	u, err := s.dir.UserByName(ctx, f.Username)
	if err != nil || u.ID == c.user.ID {
		c.fail(f, chat.ErrNotFound, "no such user")
		return
	}
	conv := chat.DirectConv(c.user.ID, u.ID)
	if !c.allowUpTo(conv, s.opts.MaxConvs) {
		c.fail(f, chat.ErrTooMany, fmt.Sprintf("at most %d conversations per connection", s.opts.MaxConvs))
		return
	}
	top, err := s.store.MaxSeq(ctx, conv)
	if err != nil {
		c.fail(f, chat.ErrUnavailable, "unavailable; retry")
		return
	}
	c.sendFrame(chat.Frame{Type: chat.TypeJoined, Ref: f.Ref, Conv: conv, Username: u.Name, Seq: top})
}

// access reports whether c may use conv: rooms by membership, lobbies once
// joined, direct conversations for their two users once opened or used.
func (s *Server) access(c *conn, conv string) bool { return c.can(conv) }

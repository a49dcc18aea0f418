package chatserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomnet/roomnet/chat"
)

// Accepting a client: admission, the upgrade and authentication.

// ServeHTTP upgrades to a WebSocket and serves one client.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.closing:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	addr := s.opts.ClientIP(r)
	if why := s.admit.addr(r.Context(), addr); why != "" {
		s.metrics.refused.WithLabelValues(refusalLabel(why)).Inc()
		tooMany(w, why)
		return
	}
	// Given back when the connection ends: by serve's reader, or here
	// when it never gets that far.
	handedOff := false
	defer func() {
		if !handedOff {
			s.admit.releaseAddr(addr)
		}
	}()
	var user User
	authed := false
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		u, err := s.dir.Authenticate(r.Context(), strings.TrimSpace(t))
		if err != nil {
			http.Error(w, `{"error":{"code":"unauthorized","message":"invalid token"}}`, http.StatusUnauthorized)
			return
		}
		if why := s.admit.user(u.ID); why != "" {
			s.metrics.refused.WithLabelValues(refusalLabel(why)).Inc()
			tooMany(w, why)
			return
		}
		user, authed = u, true
	}
	h := &hijacker{ResponseWriter: w, pool: s.bufs}
	ws, err := s.upgrader.Upgrade(h, r, nil)
	if err != nil {
		if authed {
			s.admit.releaseUser(user.ID)
		}
		return // the upgrader answered
	}
	ws.SetReadLimit(chat.MaxFrameBytes)
	if !authed {
		user, err = s.readAuth(r.Context(), ws)
		if err != nil {
			return
		}
		if why := s.admit.user(user.ID); why != "" {
			s.metrics.refused.WithLabelValues(refusalLabel(why)).Inc()
			closeNow(ws, chat.CloseTooMany, string(why))
			return
		}
	}
	handedOff = true
	s.serve(r.Context(), ws, h.nc, user, func() {
		s.admit.releaseUser(user.ID)
		s.admit.releaseAddr(addr)
	})
}

// tooMany refuses an upgrade with 429.
func tooMany(w http.ResponseWriter, why refusal) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, chat.ErrRateLimited, why)
}

func refusalLabel(why refusal) string {
	switch why {
	case refusedRate:
		return "rate"
	case refusedAddr:
		return "address"
	}
	return "user"
}

// closeNow sends a close frame and closes a connection that has no
// reader yet.
func closeNow(ws *websocket.Conn, code int, text string) {
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	ws.Close()
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

package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
)

// The staff routes under /admin: who may call each is in roles.go; every
// action that changes something is recorded in the audit log.

func (s *server) adminOverview(c echo.Context) error {
	if s.overview == nil {
		return cp.ErrNotFound
	}
	var window time.Duration
	switch r := c.QueryParam("range"); r {
	case "":
	case "15m", "1h", "24h":
		window, _ = time.ParseDuration(r)
	default:
		return badRequest(roomnet.CodeBadRequest, "range: 15m, 1h or 24h")
	}
	ov, err := s.overview(c.Request().Context(), window)
	if err != nil {
		return fmt.Errorf("reading figures: %w", err)
	}
	return c.JSON(http.StatusOK, ov)
}

func (s *server) adminRooms(c echo.Context) error {
	f := service.RoomsFilter{Query: c.QueryParam("q"), Game: c.QueryParam("game"), Before: c.QueryParam("before")}
	if len(f.Query) > 64 || len(f.Game) > 64 || len(f.Before) > 16 {
		return badRequest(roomnet.CodeBadRequest, "q, game: at most 64 characters; before: a room id")
	}
	switch c.QueryParam("state") {
	case "", "all":
	case "open":
		f.Closed = new(bool)
	case "closed":
		closed := true
		f.Closed = &closed
	default:
		return badRequest(roomnet.CodeBadRequest, "state: open, closed or all")
	}
	const page = 100
	f.Limit = page
	rooms, err := s.svc.AdminRooms(c.Request().Context(), actor(c), f)
	if err != nil {
		return err
	}
	out := roomnet.RoomList{Rooms: make([]roomnet.Room, len(rooms))}
	for i, r := range rooms {
		out.Rooms[i] = roomView(r, actor(c).IsAdmin()) // invites: admins only
	}
	if len(rooms) == page {
		out.Next = rooms[len(rooms)-1].ID
	}
	return c.JSON(http.StatusOK, out)
}

// eventView is a membership event on the admin event stream.
type eventView struct {
	Type     string    `json:"type"`
	RoomID   string    `json:"room_id,omitempty"`
	Username string    `json:"username,omitempty"`
	At       time.Time `json:"at"`
}

// adminEvents streams membership events as server-sent events until the
// client goes, the server stops, or the session that opened it ends: its
// token revoked (logout) or expired, its user banned or no longer staff. Revocation and bans end it at once (their events); the token is
// also checked again at every keepalive, as the hub may drop events.
// Delivery is at most once (the hub's): the panel re-reads the lists it
// shows on every event and on reconnect.
func (s *server) adminEvents(c echo.Context) error {
	if s.events == nil {
		return cp.ErrNotFound
	}
	me := actor(c)
	token, _ := c.Get(ctxToken).(string)
	session := cp.SessionID(token)
	expires, _ := c.Get(ctxExpires).(time.Time)
	ch, unsubscribe := s.events.Subscribe(256)
	defer unsubscribe()
	expiry := time.NewTimer(time.Until(expires))
	defer expiry.Stop()
	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n: connected\n\n")
	w.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-c.Request().Context().Done():
			return nil
		case <-s.stop:
			return nil
		case <-expiry.C:
			return nil
		case <-keepalive.C:
			if u, err := s.svc.Authenticate(c.Request().Context(), token); err != nil || !u.CanModerate() {
				return nil
			}
			fmt.Fprint(w, ": keepalive\n\n")
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			switch {
			case ev.Type == cp.EventSessionEnded && ev.Session == session,
				ev.Type == cp.EventUserBanned && ev.UserID == me.ID:
				return nil
			case ev.Type == cp.EventSessionEnded:
				continue // not a membership event
			}
			b, err := json.Marshal(eventView{Type: string(ev.Type), RoomID: ev.RoomID, Username: ev.Username, At: ev.At})
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "event: membership\ndata: %s\n\n", b)
		}
		w.Flush()
	}
}

func (s *server) adminAudit(c echo.Context) error {
	var before uint64
	if v := c.QueryParam("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest(roomnet.CodeBadRequest, "before: want an entry id")
		}
		before = n
	}
	const page = 100
	entries, err := s.svc.AuditLog(c.Request().Context(), actor(c), before, page)
	if err != nil {
		return err
	}
	out := roomnet.AuditList{Entries: make([]roomnet.AuditEntry, len(entries))}
	for i, e := range entries {
		out.Entries[i] = auditView(e)
	}
	if len(entries) == page {
		out.Next = entries[len(entries)-1].ID
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) adminSetRole(c echo.Context) error {
	var req roomnet.SetRole
	if err := decode(c, &req); err != nil {
		return err
	}
	u, err := s.svc.SetRole(c.Request().Context(), actor(c), c.Param("username"), req.Role)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, userView(u))
}

// The chat moderation routes exist only with chat (s.mod); their rules
// and audit live in the service.

func (s *server) adminMute(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	var req roomnet.Mute
	if err := decode(c, &req); err != nil {
		return err
	}
	u, until, err := s.svc.Mute(c.Request().Context(), actor(c), c.Param("username"), int64(req.Seconds), req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomnet.MuteState{Username: u.Username, Until: &until})
}

func (s *server) adminUnmute(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	u, err := s.svc.Unmute(c.Request().Context(), actor(c), c.Param("username"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomnet.MuteState{Username: u.Username})
}

func (s *server) adminDeleteMessage(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	var req roomnet.DeleteMessage
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := s.svc.DeleteMessage(c.Request().Context(), actor(c), req.Conv, req.Seq); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) adminAnnounce(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	var req roomnet.Announce
	if err := decode(c, &req); err != nil {
		return err
	}
	seq, err := s.svc.Announce(c.Request().Context(), actor(c), req.Conv, req.Text)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]uint64{"seq": seq})
}

func (s *server) adminPurgeMessages(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	var req roomnet.PurgeMessages
	if err := decodeOptional(c, &req); err != nil {
		return err
	}
	username := c.Param("username")
	n, err := s.svc.PurgeMessages(c.Request().Context(), actor(c), username, req.Conv)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomnet.Purged{Username: username, Purged: n})
}

func (s *server) adminProfile(c echo.Context) error {
	p, err := s.svc.Profile(c.Request().Context(), actor(c), c.Param("username"))
	if err != nil {
		return err
	}
	out := roomnet.UserProfile{User: userView(p.User), Rooms: make([]roomnet.ProfileRoom, len(p.Rooms)), History: make([]roomnet.AuditEntry, len(p.History))}
	if p.Banned {
		out.Ban = &roomnet.BanInfo{At: *p.User.BannedAt, Until: p.User.BanUntil, Reason: p.User.BanReason}
	}
	if p.MutedUntil != nil {
		out.Mute = &roomnet.MuteInfo{Until: *p.MutedUntil, Reason: p.MuteReason}
		out.User.MutedUntil = p.MutedUntil
	}
	for i, r := range p.Rooms {
		out.Rooms[i] = roomnet.ProfileRoom{ID: r.ID, Name: r.Name, Game: r.Game, Host: r.HostName, Members: r.Members,
			CreatedAt: r.CreatedAt, ClosedAt: r.ClosedAt, Current: r.State == cp.MemberActive && r.Open(), State: r.State, JoinedAt: r.JoinedAt}
	}
	for i, e := range p.History {
		out.History[i] = auditView(e)
	}
	return c.JSON(http.StatusOK, out)
}

func auditView(e cp.AuditEntry) roomnet.AuditEntry {
	return roomnet.AuditEntry{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail}
}

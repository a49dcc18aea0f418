package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
)

// The admin routes: all under /admin, admins only (requireAdmin), every
// action that changes something recorded in the audit log.

func (s *server) adminOverview(c echo.Context) error {
	if s.overview == nil {
		return cp.ErrNotFound
	}
	ov, err := s.overview(c.Request().Context())
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
		out.Rooms[i] = roomView(r, true)
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
// client goes or the server stops. Delivery is at most once (the hub's):
// the panel re-reads the lists it shows on every event and on reconnect.
func (s *server) adminEvents(c echo.Context) error {
	if s.events == nil {
		return cp.ErrNotFound
	}
	ch, unsubscribe := s.events.Subscribe(256)
	defer unsubscribe()
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
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case ev, ok := <-ch:
			if !ok {
				return nil
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
		out.Entries[i] = roomnet.AuditEntry{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail}
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
	s.svc.Audit(c.Request().Context(), actor(c), cp.AuditRole, u.Username, req.Role)
	return c.JSON(http.StatusOK, userView(u))
}

// maxMute bounds a mute; longer is a ban.
const maxMute = 30 * 24 * time.Hour

func (s *server) adminMute(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	var req roomnet.Mute
	if err := decode(c, &req); err != nil {
		return err
	}
	d := time.Duration(req.Seconds) * time.Second
	if req.Seconds < 1 || d > maxMute {
		return cp.Invalid("seconds: 1 to %d", int(maxMute.Seconds()))
	}
	if err := validReason(req.Reason); err != nil {
		return err
	}
	u, err := s.svc.UserByName(c.Request().Context(), actor(c), c.Param("username"))
	if err != nil {
		return err
	}
	until := time.Now().Add(d).UTC()
	if err := s.mod.Mute(c.Request().Context(), u.ID, until, req.Reason); err != nil {
		return err
	}
	s.svc.Audit(c.Request().Context(), actor(c), cp.AuditMute, u.Username, fmt.Sprintf("until %s %s", until.Format(time.RFC3339), req.Reason))
	return c.JSON(http.StatusOK, roomnet.MuteState{Username: u.Username, Until: &until})
}

func (s *server) adminUnmute(c echo.Context) error {
	if s.mod == nil {
		return cp.ErrNotFound
	}
	u, err := s.svc.UserByName(c.Request().Context(), actor(c), c.Param("username"))
	if err != nil {
		return err
	}
	if err := s.mod.Unmute(c.Request().Context(), u.ID); err != nil {
		return err
	}
	s.svc.Audit(c.Request().Context(), actor(c), cp.AuditUnmute, u.Username, "")
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
	if req.Conv == "" || len(req.Conv) > 80 || req.Seq == 0 {
		return cp.Invalid("conv and seq: required")
	}
	if err := s.mod.DeleteMessage(c.Request().Context(), req.Conv, req.Seq); err != nil {
		return err
	}
	s.svc.Audit(c.Request().Context(), actor(c), cp.AuditDeleteMessage, fmt.Sprintf("%s#%d", req.Conv, req.Seq), "")
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
	if req.Text == "" || len(req.Text) > 1000 || !utf8.ValidString(req.Text) {
		return cp.Invalid("text: 1 to 1000 bytes of UTF-8")
	}
	seq, err := s.mod.Announce(c.Request().Context(), req.Conv, req.Text)
	if err != nil {
		return err
	}
	s.svc.Audit(c.Request().Context(), actor(c), cp.AuditAnnounce, fmt.Sprintf("%s#%d", req.Conv, seq), req.Text)
	return c.JSON(http.StatusOK, map[string]uint64{"seq": seq})
}

func validReason(r string) error {
	if len(r) > 200 || !utf8.ValidString(r) {
		return cp.Invalid("reason: at most 200 bytes of UTF-8")
	}
	return nil
}

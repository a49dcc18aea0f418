package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
)

func (s *server) register(c echo.Context) error {
	var req roomnet.Credentials
	if err := decode(c, &req); err != nil {
		return err
	}
	u, err := s.svc.Register(c.Request().Context(), req.Username, req.Password)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, userView(u))
}

// credentialsLogin checks the request's credentials and issues a token.
// Wrong passwords count against the account as well as the address.
func (s *server) credentialsLogin(c echo.Context) (string, cp.User, time.Time, error) {
	var req roomnet.Credentials
	if err := decode(c, &req); err != nil {
		return "", cp.User{}, time.Time{}, err
	}
	refund, err := s.limits.reserveLogin(c, req.Username)
	if err != nil {
		return "", cp.User{}, time.Time{}, err
	}
	token, u, exp, err := s.svc.Login(c.Request().Context(), req.Username, req.Password)
	if !errors.Is(err, cp.ErrUnauthorized) {
		refund()
	}
	return token, u, exp, err
}

func (s *server) login(c echo.Context) error {
	token, u, exp, err := s.credentialsLogin(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomnet.LoginResponse{Token: token, ExpiresAt: exp, User: userView(u)})
}

func (s *server) logout(c echo.Context) error {
	tok, _ := c.Get(ctxToken).(string)
	if err := s.svc.Logout(c.Request().Context(), actor(c), tok); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) me(c echo.Context) error { return c.JSON(http.StatusOK, userView(actor(c))) }

func (s *server) users(c echo.Context) error {
	var after uint64
	if v := c.QueryParam("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest(roomnet.CodeBadRequest, "after: want a user id")
		}
		after = n
	}
	q := c.QueryParam("q")
	if len(q) > 32 {
		return badRequest(roomnet.CodeBadRequest, "q: at most 32 characters")
	}
	const page = 100
	users, err := s.svc.ListUsers(c.Request().Context(), actor(c), q, after, page)
	if err != nil {
		return err
	}
	out := roomnet.UserList{Users: make([]roomnet.User, len(users))}
	for i, u := range users {
		out.Users[i] = userView(u)
		if s.mod != nil {
			if until, ok := s.mod.MutedUntil(u.ID); ok {
				out.Users[i].MutedUntil = &until
			}
		}
	}
	if len(users) == page {
		out.Next = users[len(users)-1].ID
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) listRooms(c echo.Context) error {
	game := c.QueryParam("game")
	if len(game) > 64 {
		return badRequest(roomnet.CodeBadRequest, "game: at most 64 characters")
	}
	rooms, err := s.svc.ListPublicRooms(c.Request().Context(), game)
	if err != nil {
		return err
	}
	out := roomnet.RoomList{Rooms: make([]roomnet.Room, len(rooms))}
	for i, r := range rooms {
		out.Rooms[i] = roomView(r, false)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) createRoom(c echo.Context) error {
	var req roomnet.CreateRoom
	if err := decode(c, &req); err != nil {
		return err
	}
	room, grant, _, err := s.svc.CreateRoom(c.Request().Context(), actor(c), service.CreateRoomParams{
		Name: req.Name, Game: req.Game, MaxPlayers: req.MaxPlayers, Public: req.Public, Password: req.Password, Ports: req.Ports,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, roomnet.CreateRoomResponse{Room: roomView(room, true), Join: grantView(grant)})
}

func (s *server) getRoom(c echo.Context) error {
	u := actor(c)
	room, member, err := s.svc.GetRoom(c.Request().Context(), u, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomView(room, member || u.IsAdmin()))
}

func (s *server) closeRoom(c echo.Context) error {
	_, err := s.svc.CloseRoom(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) joinRoom(c echo.Context) error {
	var req roomnet.JoinRoom
	if err := decodeOptional(c, &req); err != nil {
		return err
	}
	grant, _, err := s.svc.JoinRoom(c.Request().Context(), actor(c), c.Param("id"), req.Password)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, grantView(grant))
}

func (s *server) joinInvite(c echo.Context) error {
	grant, _, err := s.svc.JoinByInvite(c.Request().Context(), actor(c), c.Param("code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, grantView(grant))
}

func (s *server) invite(c echo.Context) error {
	room, err := s.svc.RoomByInvite(c.Request().Context(), c.Param("code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomView(room, false))
}

func (s *server) renewKey(c echo.Context) error {
	grant, err := s.svc.RenewKey(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, grantView(grant))
}

func (s *server) leave(c echo.Context) error {
	_, err := s.svc.Leave(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) kick(c echo.Context) error {
	var req roomnet.Kick
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Username == "" {
		return cp.Invalid("username: required")
	}
	_, err := s.svc.Kick(c.Request().Context(), actor(c), c.Param("id"), req.Username)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) rotateInvite(c echo.Context) error {
	code, err := s.svc.RotateInvite(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, roomnet.Invite{Code: code, Link: InviteLink(code)})
}

func (s *server) members(c echo.Context) error {
	members, err := s.svc.Members(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	out := roomnet.MemberList{Members: make([]roomnet.Member, len(members))}
	for i, m := range members {
		v := roomnet.Member{Username: m.User.Username, Host: m.Host, JoinedAt: m.JoinedAt, Nodes: []roomnet.Node{}}
		if m.Paths != nil {
			at := m.Paths.At
			v.ReportedAt = &at
			v.PathSource = m.Paths.Source
			v.Links = []roomnet.Link{}
			for _, l := range m.Paths.Links {
				v.Links = append(v.Links, roomnet.Link{Peer: l.Peer, IP: l.IP, Direct: l.Direct, Addr: l.Addr, Relay: l.Relay, PeerRelay: l.PeerRelay,
					RTTMS: float64(l.RTT.Microseconds()) / 1000, Inferred: l.Inferred})
			}
		}
		for _, n := range m.Nodes {
			nv := roomnet.Node{ID: n.ID, Name: n.Name, Online: n.Online, LastSeen: n.LastSeen}
			for _, ip := range n.IPs {
				nv.IPs = append(nv.IPs, ip.String())
			}
			v.Nodes = append(v.Nodes, nv)
		}
		out.Members[i] = v
	}
	return c.JSON(http.StatusOK, out)
}

// banRequest is roomnet.Ban as decoded: a seconds given must be 1 or
// more; none is a permanent ban.
type banRequest struct {
	Seconds *int64 `json:"seconds"`
	Reason  string `json:"reason"`
}

func (s *server) ban(c echo.Context) error {
	var req banRequest
	if err := decodeOptional(c, &req); err != nil {
		return err
	}
	var seconds int64
	if req.Seconds != nil {
		if *req.Seconds < 1 {
			return cp.Invalid("seconds: 1 to %d, or none for a permanent ban", int64(service.MaxBan/time.Second))
		}
		seconds = *req.Seconds
	}
	_, _, err := s.svc.Ban(c.Request().Context(), actor(c), c.Param("username"), seconds, req.Reason)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) unban(c echo.Context) error {
	if err := s.svc.Unban(c.Request().Context(), actor(c), c.Param("username")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) myRooms(c echo.Context) error {
	rooms, err := s.svc.MyRooms(c.Request().Context(), actor(c))
	if err != nil {
		return err
	}
	out := roomnet.RoomList{Rooms: make([]roomnet.Room, len(rooms))}
	for i, r := range rooms {
		out.Rooms[i] = roomView(r, true)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) reportPaths(c echo.Context) error {
	var req roomnet.PathReport
	if err := decode(c, &req); err != nil {
		return err
	}
	links, err := pathLinks(req)
	if err != nil {
		return err
	}
	if err := s.svc.ReportPaths(c.Request().Context(), actor(c), c.Param("id"), links); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// pathLinks turns a path report's links into the service's.
func pathLinks(req roomnet.PathReport) ([]service.Link, error) {
	links := make([]service.Link, len(req.Links))
	for i, l := range req.Links {
		if !(l.RTTMS >= 0 && l.RTTMS <= 60000) {
			return nil, cp.Invalid("links: rtt_ms 0 to 60000")
		}
		links[i] = service.Link{Peer: l.Peer, IP: l.IP, Direct: l.Direct, Addr: l.Addr, Relay: l.Relay, PeerRelay: l.PeerRelay,
			RTT: time.Duration(l.RTTMS * float64(time.Millisecond))}
	}
	return links, nil
}

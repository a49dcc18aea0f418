package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
)

// The node view and room chat reading for the admin panel; the rules
// (who, what is audited) are the service's.

func (s *server) adminNodes(c echo.Context) error {
	nodes, failed, err := s.svc.Nodes(c.Request().Context(), actor(c))
	if err != nil {
		return err
	}
	now := time.Now()
	out := roomnet.NodeList{Nodes: make([]roomnet.ShardNode, len(nodes)), Unavailable: make([]roomnet.ShardNodesError, len(failed))}
	for i, n := range nodes {
		out.Nodes[i] = shardNodeView(n, now)
	}
	for i, f := range failed {
		out.Unavailable[i] = roomnet.ShardNodesError{Shard: f.Shard, Error: f.Err}
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) adminExpireNode(c echo.Context) error { return s.actOnNode(c, service.NodeExpire) }

func (s *server) adminDeleteNode(c echo.Context) error { return s.actOnNode(c, service.NodeDelete) }

func (s *server) actOnNode(c echo.Context, action string) error {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil || id == 0 {
		return badRequest(roomnet.CodeBadRequest, "id: want a node id")
	}
	n, err := s.svc.ActOnNode(c.Request().Context(), actor(c), c.Param("shard"), id, action)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, shardNodeView(n, time.Now()))
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func shardNodeView(n service.NodeView, now time.Time) roomnet.ShardNode {
	v := roomnet.ShardNode{
		Shard: n.Shard, ID: n.ID, Name: n.Name, Hostname: n.Hostname, IPs: make([]string, len(n.IPs)), Online: n.Online,
		LastSeen: timePtr(n.LastSeen), Expiry: timePtr(n.Expiry), Expired: !n.Expiry.IsZero() && !n.Expiry.After(now),
		CreatedAt: timePtr(n.CreatedAt), HeadscaleUser: n.UserName, RoomID: n.Room.ID, RoomName: n.Room.Name,
		RoomOpen: n.Room.ID != "" && n.Room.Open(), Username: n.Username, Endpoints: n.Endpoints,
	}
	for i, a := range n.IPs {
		v.IPs[i] = a.String()
	}
	if v.Endpoints == nil {
		v.Endpoints = []string{}
	}
	if n.RelaySource.IsValid() {
		v.RelaySource, v.RelaySourceAt = n.RelaySource.String(), timePtr(n.RelaySourceAt)
	}
	return v
}

func (s *server) adminChatHistory(c echo.Context) error {
	var before, after uint64
	var limit int
	for _, q := range []struct {
		name string
		into *uint64
	}{{"before", &before}, {"after", &after}} {
		if v := c.QueryParam(q.name); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return badRequest(roomnet.CodeBadRequest, "%s: want a sequence number", q.name)
			}
			*q.into = n
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest(roomnet.CodeBadRequest, "limit: want 1 to %d", service.ChatPageMax)
		}
		limit = n
	}
	p, err := s.svc.ReadChat(c.Request().Context(), actor(c), c.QueryParam("conv"), before, after, limit)
	if err != nil {
		return err
	}
	out := roomnet.ChatHistory{Conv: p.Conv, RoomName: p.RoomName, Messages: make([]roomnet.ChatHistoryMessage, len(p.Messages)), Next: p.Next}
	for i, m := range p.Messages {
		out.Messages[i] = roomnet.ChatHistoryMessage{Seq: m.Seq, Kind: m.Kind, SenderID: m.SenderID, Sender: m.Sender, Body: m.Body, At: m.At.UTC()}
	}
	return c.JSON(http.StatusOK, out)
}

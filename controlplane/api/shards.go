package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
)

// verifyBodyLimit bounds a DERP admission request, as Headscale's own
// /verify does: the request is a node key and an address.
const verifyBodyLimit = 4 << 10

// verify answers DERP relays' admission question (tailscale's
// derpserver.SetVerifyClientURL protocol, which Headscale's /verify
// speaks too): is this node key a node of any shard? 503 when no shard
// answered, which relays take as a refusal.
func (s *server) verify(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, verifyBodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: roomnet.CodeBodyTooLarge, msg: "request body too large"}
		}
		return err
	}
	var req tailcfg.DERPAdmitClientRequest
	if err := json.Unmarshal(body, &req); err != nil || req.NodePublic.IsZero() {
		return badRequest(roomnet.CodeInvalidJSON, "want {\"NodePublic\":\"nodekey:…\",\"Source\":\"address\"}")
	}
	allow, err := s.svc.AdmitNode(c.Request().Context(), req.NodePublic, req.Source)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, tailcfg.DERPAdmitClientResponse{Allow: allow})
}

func (s *server) adminShards(c echo.Context) error {
	list, err := s.svc.Shards(c.Request().Context(), actor(c))
	if err != nil {
		return err
	}
	out := roomnet.ShardList{Shards: make([]roomnet.Shard, len(list))}
	for i, sh := range list {
		out.Shards[i] = shardView(sh)
	}
	return c.JSON(http.StatusOK, out)
}

func shardView(sh service.ShardStatus) roomnet.Shard {
	v := roomnet.Shard{
		Name: sh.Name, Kind: sh.Kind, Version: sh.Version, Healthy: sh.Healthy, Quarantined: sh.Quarantined, LastError: sh.LastError,
		Rooms: sh.Rooms, Nodes: sh.Nodes, Online: sh.Online, Grants: sh.Grants, NodeCap: sh.NodeCap,
	}
	v.Lost = sh.Lost
	if !sh.DownSince.IsZero() {
		at := sh.DownSince.UTC()
		v.DownSince = &at
	}
	if sh.Checked {
		at := sh.CheckedAt.UTC()
		v.CheckedAt = &at
	}
	if p := sh.Process; p != nil {
		v.Process = &roomnet.ShardProcess{PID: p.PID, CPUSeconds: p.CPUSeconds, RSSBytes: p.RSSBytes, Restarts: p.Restarts}
	}
	return v
}

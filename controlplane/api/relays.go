package api

import (
	"crypto/subtle"
	"net/http"

	"github.com/labstack/echo/v4"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/relays"
	"github.com/roomnet/roomnet/roomnet"
)

// authenticateRelay admits relays holding the shared relay token.
func (s *server) authenticateRelay(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if subtle.ConstantTimeCompare([]byte(bearer(c)), []byte(s.relayToken)) != 1 {
			return cp.ErrUnauthorized
		}
		return next(c)
	}
}

func (s *server) relayHeartbeat(c echo.Context) error {
	var hb roomnet.RelayHeartbeat
	if err := decode(c, &hb); err != nil {
		return err
	}
	if err := relays.Validate(hb); err != nil {
		return cp.Invalid("%s", err.Error())
	}
	if err := s.relays.Heartbeat(hb); err != nil {
		return cp.Invalid("%s", err.Error())
	}
	return c.NoContent(http.StatusNoContent)
}

// derpMap serves the DERP map every node gets anyway; an external
// Headscale can read it with derp.urls.
func (s *server) derpMap(c echo.Context) error { return c.JSON(http.StatusOK, s.relays.Map()) }

func (s *server) listRelays(c echo.Context) error {
	if !actor(c).IsAdmin() {
		return cp.ErrForbidden
	}
	return c.JSON(http.StatusOK, roomnet.RelayList{Relays: s.relays.List()})
}

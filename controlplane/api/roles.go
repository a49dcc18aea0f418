package api

import (
	"fmt"
	"strings"

	"github.com/labstack/echo/v4"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/roomnet"
)

// minRole is who may call what: the least role each staff route needs,
// keyed "METHOD path" as registered under /api/v1. A route under /admin
// that is not listed is for admins only; any other route that is not
// listed is open to every signed-in user, whose own rules the service
// applies (hosts kick, members see members). docs/api.md has this table in
// words.
var minRole = map[string]string{
	"GET /users":                                 cp.RoleModerator,
	"POST /users/:username/ban":                  cp.RoleModerator,
	"POST /users/:username/unban":                cp.RoleModerator,
	"GET /relays":                                cp.RoleAdmin,
	"GET /admin/overview":                        cp.RoleAdmin,
	"GET /admin/rooms":                           cp.RoleModerator,
	"GET /admin/events":                          cp.RoleModerator,
	"GET /admin/audit":                           cp.RoleModerator,
	"POST /admin/users/:username/role":           cp.RoleAdmin,
	"POST /admin/users/:username/mute":           cp.RoleModerator,
	"DELETE /admin/users/:username/mute":         cp.RoleModerator,
	"POST /admin/users/:username/purge-messages": cp.RoleModerator,
	"GET /admin/users/:username":                 cp.RoleModerator,
	"POST /admin/chat/delete":                    cp.RoleModerator,
	"POST /admin/chat/announce":                  cp.RoleModerator,
	"GET /admin/chat/history":                    cp.RoleModerator,
}

// routeRole is the least role a request's route needs ("": any signed-in
// user).
func routeRole(c echo.Context) string {
	path := strings.TrimPrefix(c.Path(), roomnet.APIVersionPrefix)
	if r, ok := minRole[c.Request().Method+" "+path]; ok {
		return r
	}
	if p := strings.TrimPrefix(c.Request().URL.Path, roomnet.APIVersionPrefix); p == "/admin" || strings.HasPrefix(p, "/admin/") {
		return cp.RoleAdmin
	}
	return ""
}

// authorize refuses a signed-in user whose role is below the route's
// (minRole): 403 forbidden. It runs after authenticate.
func authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if need := routeRole(c); need != "" && cp.RoleRank(actor(c).Role) < cp.RoleRank(need) {
			return fmt.Errorf("%w: for %ss", cp.ErrForbidden, need)
		}
		return next(c)
	}
}

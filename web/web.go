// Package web serves roomnet's browser pages from assets embedded in the
// binary: the player lobby at / and the admin panel at /admin. Both are
// clients of the REST API and the chat protocol, like any launcher; this
// package holds no rules. It sets the pages' security headers (a strict
// Content-Security-Policy: nothing from other origins, no inline script)
// and keeps the admin panel's page from anyone but a signed-in admin.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed static
var assets embed.FS

// Viewer says who a request's session cookie belongs to.
type Viewer func(r *http.Request) (signedIn, admin bool)

// CSP is the pages' Content-Security-Policy: scripts, styles, images and
// connections (REST, the event stream, the chat WebSocket) from this
// origin only; no framing, no plugins, no inline script.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Register mounts the pages on e.
func Register(e *echo.Echo, viewer Viewer) {
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServer(http.FS(static))
	page := func(c echo.Context, status int, name string) error {
		b, err := fs.ReadFile(static, name)
		if err != nil {
			return err
		}
		return c.HTMLBlob(status, b)
	}
	g := e.Group("", headers)
	g.GET("/", func(c echo.Context) error { return page(c, http.StatusOK, "lobby.html") })
	admin := func(c echo.Context) error {
		signedIn, isAdmin := viewer(c.Request())
		switch {
		case !signedIn:
			return page(c, http.StatusOK, "login.html")
		case !isAdmin:
			return page(c, http.StatusForbidden, "forbidden.html")
		}
		return page(c, http.StatusOK, "admin.html")
	}
	g.GET("/admin", admin)
	g.GET("/admin/", admin)
	g.GET("/static/*", func(c echo.Context) error {
		if strings.HasSuffix(c.Request().URL.Path, "/") {
			return echo.ErrNotFound // files only, no directory listings
		}
		return echo.WrapHandler(http.StripPrefix("/static/", files))(c)
	})
}

func headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		return next(c)
	}
}

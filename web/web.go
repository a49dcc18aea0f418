// Package web serves roomnet's browser pages from assets embedded in the
// binary: the player lobby at / and the admin panel at /admin. Both are
// clients of the REST API and the chat protocol, like any launcher; this
// package holds no rules. It sets the pages' security headers (a strict
// Content-Security-Policy: nothing from other origins, no inline script
// or style) and keeps the admin panel's page from anyone but a signed-in
// moderator or admin (the panel shows moderators only their tools; the
// API decides). Static assets are served compressed (gzip, compressed once when
// the package registers) and cacheable with a content-hash ETag; pages
// are compressed the same way but never cached (what /admin shows
// depends on the session).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed static
var assets embed.FS

// Viewer says who a request's session cookie belongs to: signed in at
// all, and staff (a moderator or an admin), who get the admin panel.
type Viewer func(r *http.Request) (signedIn, staff bool)

// CSP is the pages' Content-Security-Policy: scripts, styles, images and
// connections (REST, the event stream, the chat WebSocket) from this
// origin only; no framing, no plugins, no inline script or style.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve: its bytes, their gzip
// form (nil when compressing does not pay) and a content-hash ETag.
type asset struct {
	body, gz []byte
	ctype    string
	etag     string // quoted; the gzip form's is etag with -gz inside the quotes
}

func (a *asset) gzETag() string { return strings.TrimSuffix(a.etag, `"`) + `-gz"` }

// loadAssets reads every embedded file once and compresses it.
func loadAssets(static fs.FS) (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(static, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a := &asset{body: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: mime.TypeByExtension(path.Ext(name))}
		if a.ctype == "" {
			a.ctype = http.DetectContentType(b)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(b)
		if err := zw.Close(); err != nil {
			return err
		}
		if buf.Len() < len(b)*9/10 {
			a.gz = buf.Bytes()
		}
		out[name] = a
		return nil
	})
	return out, err
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.TrimSpace(name) != "*" {
			continue
		}
		if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// matches reports whether an If-None-Match header names one of etags.
func matches(header string, etags ...string) bool {
	if strings.TrimSpace(header) == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		for _, e := range etags {
			if t == e {
				return true
			}
		}
	}
	return false
}

// serve writes an asset: 304 when the client holds it, gzip when the
// client takes it. The bytes are cacheable but revalidated on each use
// (the names carry no version; an upgrade must not mix old and new).
func (a *asset) serve(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	gz := a.gz != nil && acceptsGzip(c.Request().Header.Get("Accept-Encoding"))
	etag := a.etag
	if gz {
		etag = a.gzETag()
	}
	h.Set("ETag", etag)
	if matches(c.Request().Header.Get("If-None-Match"), a.etag, a.gzETag()) {
		return c.NoContent(http.StatusNotModified)
	}
	body := a.body
	if gz {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if c.Request().Method == http.MethodHead {
		h.Set("Content-Type", a.ctype)
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, a.ctype, body)
}

// Register mounts the pages on e: the lobby, the admin panel, the
// assets, a favicon and, for any other path outside the API, a page
// that says it is not there (API paths keep their JSON errors).
func Register(e *echo.Echo, viewer Viewer) {
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files, err := loadAssets(static)
	if err != nil {
		panic(err) // as above
	}
	page := func(c echo.Context, status int, name string) error {
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Add("Vary", "Accept-Encoding")
		a := files[name]
		if a.gz != nil && acceptsGzip(c.Request().Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			return c.Blob(status, echo.MIMETextHTMLCharsetUTF8, a.gz)
		}
		return c.HTMLBlob(status, a.body)
	}
	g := e.Group("", headers)
	g.GET("/", func(c echo.Context) error { return page(c, http.StatusOK, "lobby.html") })
	admin := func(c echo.Context) error {
		signedIn, staff := viewer(c.Request())
		switch {
		case !signedIn:
			return page(c, http.StatusOK, "login.html")
		case !staff:
			return page(c, http.StatusForbidden, "forbidden.html")
		}
		return page(c, http.StatusOK, "admin.html")
	}
	g.GET("/admin", admin)
	g.GET("/admin/", admin)
	g.GET("/favicon.ico", func(c echo.Context) error { return files["favicon.svg"].serve(c) })
	g.GET("/static/*", func(c echo.Context) error {
		a := files[c.Param("*")]
		if a == nil {
			return echo.ErrNotFound // files only, no directory listings
		}
		return a.serve(c)
	})
	g.Any("/*", func(c echo.Context) error {
		p := c.Request().URL.Path
		if p == "/api" || strings.HasPrefix(p, "/api/") || c.Request().Method != http.MethodGet {
			return echo.ErrNotFound // the API answers in JSON
		}
		return page(c, http.StatusNotFound, "notfound.html")
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

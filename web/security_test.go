package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// browserish is an HTTP client with a cookie jar, signed in through the
// browser session endpoint; it returns the client, the session cookie
// and the CSRF token.
func browserish(t *testing.T, h *roomnettest.Harness, user, password string) (*http.Client, *http.Cookie, string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	req, _ := http.NewRequest("POST", h.URL+"/api/v1/auth/session", strings.NewReader(`{"username":"`+user+`","password":"`+password+`"}`))
	req.Header.Set("Origin", h.URL)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var s roomnet.Session
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	require.NotEmpty(t, s.CSRFToken)
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "roomnet_session" {
			ck = k
		}
	}
	require.NotNil(t, ck, "a session cookie is set")
	return c, ck, s.CSRFToken
}

type answer struct {
	status int
	code   string
	body   string
}

func do(t *testing.T, c *http.Client, method, url, body string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb roomnet.ErrorBody
	_ = json.Unmarshal(b, &eb)
	return answer{resp.StatusCode, eb.Error.Code, string(b)}
}

func TestSessionCookieIsHttpOnlyAndStrict(t *testing.T) {
	h := roomnettest.New(t)
	h.User("gina")
	_, ck, _ := browserish(t, h, "gina", "password-gina")
	require.True(t, ck.HttpOnly, "script must not read the session")
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/", ck.Path)
	require.Positive(t, ck.MaxAge)
	require.NotContains(t, ck.Value, " ")
}

func TestPlayerCannotReachAdminRoutes(t *testing.T) {
	h := roomnettest.New(t)
	h.User("hank")
	c, _, csrf := browserish(t, h, "hank", "password-hank")
	same := map[string]string{"Origin": h.URL, "X-CSRF-Token": csrf}

	page := do(t, c, "GET", h.URL+"/admin", "", nil)
	require.Equal(t, 403, page.status)
	require.Contains(t, page.body, "Moderators and admins only")
	require.NotContains(t, page.body, "admin.js", "the panel's page is not served to players")

	for _, r := range []struct{ method, path, body string }{
		{"GET", "/admin/overview", ""},
		{"GET", "/admin/rooms", ""},
		{"GET", "/admin/events", ""},
		{"GET", "/admin/audit", ""},
		{"GET", "/users", ""},
		{"GET", "/relays", ""},
		{"POST", "/admin/users/admin/role", `{"role":"player"}`},
		{"POST", "/admin/users/hank/role", `{"role":"admin"}`},
		{"POST", "/admin/users/admin/mute", `{"seconds":60}`},
		{"DELETE", "/admin/users/admin/mute", ""},
		{"POST", "/admin/chat/delete", `{"conv":"lobby:main","seq":1}`},
		{"POST", "/admin/chat/announce", `{"conv":"lobby:main","text":"hi"}`},
		{"POST", "/users/admin/ban", ""},
		{"POST", "/admin/users/admin/purge-messages", ""},
		{"GET", "/admin/users/admin", ""},
	} {
		a := do(t, c, r.method, h.URL+"/api/v1"+r.path, r.body, same)
		require.Equal(t, 403, a.status, "%s %s: %s", r.method, r.path, a.body)
		require.Equal(t, roomnet.CodeForbidden, a.code, "%s %s", r.method, r.path)
	}
	me, err := h.Admin.SearchUsers(roomnettest.Context(t, 10*time.Second), "hank")
	require.NoError(t, err)
	require.Equal(t, "player", me.Users[0].Role, "the refused role change changed nothing")

	// Without a session the panel asks for one; the API says 401.
	anon := &http.Client{Timeout: 10 * time.Second}
	login := do(t, anon, "GET", h.URL+"/admin", "", nil)
	require.Equal(t, 200, login.status)
	require.Contains(t, login.body, "login.js")
	require.Equal(t, 401, do(t, anon, "GET", h.URL+"/api/v1/admin/overview", "", nil).status)
}

func TestCSRFIsRefusedAndChangesNothing(t *testing.T) {
	h := roomnettest.New(t)
	ivan := h.User("ivan")
	ctx := roomnettest.Context(t, 30*time.Second)
	c, _, csrf := browserish(t, h, "ivan", "password-ivan")
	room := `{"name":"csrf","max_players":4,"public":true}`
	for name, hdr := range map[string]map[string]string{
		"no token":                 {"Origin": h.URL},
		"wrong token":              {"Origin": h.URL, "X-CSRF-Token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		"foreign origin":           {"Origin": "http://evil.example", "X-CSRF-Token": csrf},
		"cross-site fetch":         {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": csrf},
		"token of another session": {"Origin": h.URL, "X-CSRF-Token": otherCSRF(t, h)},
	} {
		a := do(t, c, "POST", h.URL+"/api/v1/rooms", room, hdr)
		require.Equal(t, 403, a.status, "%s: %s", name, a.body)
		require.Equal(t, roomnet.CodeCSRF, a.code, name)
	}
	mine, err := ivan.MyRooms(ctx)
	require.NoError(t, err)
	require.Empty(t, mine, "refused requests create nothing")

	// Reads need no token; the right token from this site works.
	require.Equal(t, 200, do(t, c, "GET", h.URL+"/api/v1/rooms", "", nil).status)
	ok := do(t, c, "POST", h.URL+"/api/v1/rooms", room, map[string]string{"Origin": h.URL, "X-CSRF-Token": csrf})
	require.Equal(t, 201, ok.status, ok.body)

	// Signing in from a foreign page (login CSRF) is refused.
	anon := &http.Client{Timeout: 10 * time.Second}
	a := do(t, anon, "POST", h.URL+"/api/v1/auth/session", `{"username":"ivan","password":"password-ivan"}`, map[string]string{"Origin": "http://evil.example"})
	require.Equal(t, 403, a.status)
	require.Equal(t, roomnet.CodeCSRF, a.code)

	// Bearer clients are not cookie sessions: no token needed.
	_, err = ivan.CreateRoom(ctx, roomnet.CreateRoom{Name: "bearer", MaxPlayers: 4})
	require.NoError(t, err)

	// Signing out revokes the session at once.
	require.Equal(t, 204, do(t, c, "DELETE", h.URL+"/api/v1/auth/session", "", map[string]string{"Origin": h.URL, "X-CSRF-Token": csrf}).status)
	require.Equal(t, 401, do(t, c, "GET", h.URL+"/api/v1/me", "", nil).status)
}

func otherCSRF(t *testing.T, h *roomnettest.Harness) string {
	h.User("judy")
	_, _, csrf := browserish(t, h, "judy", "password-judy")
	return csrf
}

// A page of another site cannot open the chat WebSocket with the
// visitor's cookie (cross-site WebSocket hijacking); this site's page can.
func TestChatWebSocketRefusesForeignOriginsWithCookies(t *testing.T) {
	h := roomnettest.New(t)
	h.User("kate")
	_, ck, _ := browserish(t, h, "kate", "password-kate")
	url := "ws" + strings.TrimPrefix(h.URL, "http") + "/ws"
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		hdr := http.Header{"Cookie": {ck.Name + "=" + ck.Value}}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return websocket.DefaultDialer.DialContext(ctx, url, hdr)
	}
	for _, origin := range []string{"http://evil.example", ""} {
		ws, resp, err := dial(origin)
		if ws != nil {
			ws.Close()
		}
		require.Error(t, err, "origin %q", origin)
		require.Equal(t, 403, resp.StatusCode, "origin %q", origin)
	}
	ws, _, err := dial(h.URL)
	require.NoError(t, err)
	defer ws.Close()
	_, b, err := ws.ReadMessage()
	require.NoError(t, err)
	require.Contains(t, string(b), `"user":"kate"`, "the cookie authenticated the session")
}

func TestPagesCarrySecurityHeaders(t *testing.T) {
	h := roomnettest.New(t)
	resp, err := http.Get(h.URL + "/static/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode, "no directory listing of the assets")
	for _, path := range []string{"/", "/admin", "/static/chat.js"} {
		resp, err := http.Get(h.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, path)
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "default-src 'none'", path)
		require.Contains(t, csp, "script-src 'self'", path)
		require.Contains(t, csp, "frame-ancestors 'none'", path)
		require.NotContains(t, csp, "unsafe-inline", path)
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
	}
}

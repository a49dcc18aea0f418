package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// openStream opens the admin event stream with token and returns a channel
// that is closed when the server ends the stream.
func openStream(t *testing.T, h *roomnettest.Harness, token string) <-chan struct{} {
	t.Helper()
	return openStreamWith(t, h, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) })
}

// browserSession signs in as a page does and returns the session cookie
// and CSRF token.
func browserSession(t *testing.T, h *roomnettest.Harness, user, password string) (int, *http.Cookie, string) {
	t.Helper()
	resp, err := http.Post(h.URL+"/api/v1/auth/session", "application/json", strings.NewReader(login(user, password)))
	require.NoError(t, err)
	defer resp.Body.Close()
	var s roomnet.Session
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	for _, c := range resp.Cookies() {
		if c.Name == "roomnet_session" {
			return resp.StatusCode, c, s.CSRFToken
		}
	}
	t.Fatal("no session cookie")
	return 0, nil, ""
}

func openStreamWith(t *testing.T, h *roomnettest.Harness, auth func(*http.Request)) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+"/api/v1/admin/events", nil)
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	connected := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), ": connected") {
				close(connected)
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not open")
	}
	return ended
}

func requireEnds(t *testing.T, ended <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("the event stream outlived %s", why)
	}
}

func requireOpen(t *testing.T, ended <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-ended:
		t.Fatalf("the event stream ended on %s", why)
	case <-time.After(300 * time.Millisecond):
	}
}

// The admin event stream ends with the session that opened it: logout
// (bearer or browser session), a ban of its user, expiry of its token.
func TestAdminEventStreamEndsWithItsSession(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	admin := func(name string) *roomnet.Client {
		c := h.User(name)
		_, err := h.Admin.SetRole(ctx, name, "admin")
		require.NoError(t, err)
		return c
	}

	// Logout of the token that opened it, not of another session.
	olga := admin("olga")
	other, _, err := roomnet.NewClient(h.URL).Login(ctx, "olga", "password-olga")
	require.NoError(t, err)
	events, unsubscribe := h.Server.Events.Subscribe(256)
	defer unsubscribe()
	ended := openStream(t, h, olga.Token())
	require.NoError(t, other.Logout(ctx))
	requireOpen(t, ended, "the logout of another session of the same user")
	olgaToken := olga.Token()
	require.NoError(t, olga.Logout(ctx))
	requireEnds(t, ended, "its token's logout")
	sessions := 0
	for sessions < 2 {
		select {
		case ev := <-events:
			if ev.Type != cp.EventSessionEnded {
				continue
			}
			sessions++
			require.Equal(t, "olga", ev.Username)
			require.Len(t, ev.Session, 64, "hex SHA-256")
			if sessions == 2 {
				require.Equal(t, cp.SessionID(olgaToken), ev.Session, "the event names the revoked token's session")
			} else {
				require.Equal(t, cp.SessionID(other.Token()), ev.Session)
			}
		case <-ctx.Done():
			t.Fatal("no session_ended events")
		}
	}

	// A browser session signing out (cookie and CSRF token, as the panel).
	admin("quinn")
	status, cookie, csrf := browserSession(t, h, "quinn", "password-quinn")
	require.Equal(t, http.StatusOK, status)
	ended = openStreamWith(t, h, func(r *http.Request) { r.AddCookie(cookie) })
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, h.URL+"/api/v1/auth/session", nil)
	req.AddCookie(cookie)
	req.Header.Set("X-CSRF-Token", csrf)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	requireEnds(t, ended, "its browser session's sign-out")

	// A ban of its user.
	pete := admin("pete")
	ended = openStream(t, h, pete.Token())
	require.NoError(t, h.Admin.Ban(ctx, "pete"))
	requireEnds(t, ended, "the ban of its user")
}

func TestAdminEventStreamEndsWhenItsTokenExpires(t *testing.T) {
	const ttl = 4 * time.Second
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Server.TokenTTL = ttl })
	ctx := roomnettest.Context(t, 60*time.Second)
	c, _, err := roomnet.NewClient(h.URL).Login(ctx, h.Config.Auth.AdminUsername, roomnettest.AdminPassword)
	require.NoError(t, err)
	opened := time.Now()
	ended := openStream(t, h, c.Token())
	select {
	case <-ended:
		require.GreaterOrEqual(t, time.Since(opened), ttl-time.Second, "not before the token expired")
	case <-time.After(ttl + 10*time.Second):
		t.Fatal("the event stream outlived its token")
	}
}

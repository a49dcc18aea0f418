package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

func raw(t *testing.T, method, url, token, body string) (int, roomnet.ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb roomnet.ErrorBody
	if resp.StatusCode >= 400 {
		require.NoError(t, json.Unmarshal(b, &eb), "error bodies are JSON: %s", b)
		require.NotEmpty(t, eb.Error.Code)
		require.NotEmpty(t, eb.Error.Message)
	}
	return resp.StatusCode, eb
}

func requireCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	roomnettest.RequireCode(t, err, status, code)
}

func TestBadInputIsRefusedAndStoresNothing(t *testing.T) {
	h := roomnettest.New(t)
	alice := h.User("alice")
	ctx := roomnettest.Context(t, 60*time.Second)
	rooms := h.URL + "/api/v1/rooms"
	long := strings.Repeat("x", 65)
	cases := []struct {
		name, method, url, body string
		status                  int
		code                    string
	}{
		{"malformed json", "POST", rooms, `{"name": "a",`, 400, roomnet.CodeInvalidJSON},
		{"not an object", "POST", rooms, `[1,2]`, 400, roomnet.CodeInvalidJSON},
		{"empty body", "POST", rooms, ``, 400, roomnet.CodeInvalidJSON},
		{"unknown field", "POST", rooms, `{"name":"a","max_players":4,"public":true,"admin":true}`, 400, roomnet.CodeInvalidJSON},
		{"trailing data", "POST", rooms, `{"name":"a","max_players":4}{"x":1}`, 400, roomnet.CodeInvalidJSON},
		{"wrong type", "POST", rooms, `{"name":"a","max_players":"four"}`, 400, roomnet.CodeInvalidJSON},
		{"oversized body", "POST", rooms, `{"name":"` + strings.Repeat("a", 70<<10) + `","max_players":4}`, 413, roomnet.CodeBodyTooLarge},
		{"max_players zero", "POST", rooms, `{"name":"a","max_players":0}`, 400, roomnet.CodeBadRequest},
		{"max_players one", "POST", rooms, `{"name":"a","max_players":1}`, 400, roomnet.CodeBadRequest},
		{"absurd max_players", "POST", rooms, `{"name":"a","max_players":100000}`, 400, roomnet.CodeBadRequest},
		{"negative max_players", "POST", rooms, `{"name":"a","max_players":-3}`, 400, roomnet.CodeBadRequest},
		{"empty name", "POST", rooms, `{"name":"  ","max_players":4}`, 400, roomnet.CodeBadRequest},
		{"long name", "POST", rooms, `{"name":"` + long + `","max_players":4}`, 400, roomnet.CodeBadRequest},
		{"long game", "POST", rooms, `{"name":"a","game":"` + long + `","max_players":4}`, 400, roomnet.CodeBadRequest},
		{"control characters", "POST", rooms, `{"name":"a\u0000b","max_players":4}`, 400, roomnet.CodeBadRequest},
		{"long password", "POST", rooms, `{"name":"a","max_players":4,"password":"` + strings.Repeat("p", 100) + `"}`, 400, roomnet.CodeBadRequest},
		{"kick without username", "POST", rooms + "/nope/kick", `{}`, 400, roomnet.CodeBadRequest},
		{"unknown route", "GET", h.URL + "/api/v1/nothing", ``, 404, roomnet.CodeNotFound},
		{"unknown room", "GET", rooms + "/nope", ``, 404, roomnet.CodeNotFound},
		// The users list is for staff: a player is refused before the
		// cursor is read; an admin's bad cursor is 400 (below).
		{"users list by a player", "GET", h.URL + "/api/v1/users?after=x", ``, 403, roomnet.CodeForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, eb := raw(t, tc.method, tc.url, alice.Token(), tc.body)
			require.Equal(t, tc.status, status, eb.Error.Message)
			require.Equal(t, tc.code, eb.Error.Code, eb.Error.Message)
		})
	}
	status, eb := raw(t, "GET", h.URL+"/api/v1/users?after=x", h.Admin.Token(), ``)
	require.Equal(t, 400, status, eb.Error.Message)
	require.Equal(t, roomnet.CodeBadRequest, eb.Error.Code)
	regCases := []struct{ name, body string }{
		{"short username", `{"username":"ab","password":"password1"}`},
		{"username with spaces", `{"username":"a b c","password":"password1"}`},
		{"uppercase username", `{"username":"Alice2","password":"password1"}`},
		{"short password", `{"username":"someone","password":"short"}`},
		{"long password", `{"username":"someone","password":"` + strings.Repeat("p", 73) + `"}`},
	}
	for _, tc := range regCases {
		t.Run("register "+tc.name, func(t *testing.T) {
			status, eb := raw(t, "POST", h.URL+"/api/v1/auth/register", "", tc.body)
			require.Equal(t, 400, status, eb.Error.Message)
		})
	}
	_, err := h.Anon().Register(ctx, "alice", "another-password")
	requireCode(t, err, 409, roomnet.CodeUsernameTaken)

	// Nothing was stored: no rooms, no Headscale users, only two accounts.
	list, err := alice.Rooms(ctx, "")
	require.NoError(t, err)
	require.Empty(t, list)
	users, err := h.Server.Headscale().Client().ListUsers(ctx)
	require.NoError(t, err)
	require.Empty(t, users)
	accounts, err := h.Admin.Users(ctx, 0)
	require.NoError(t, err)
	require.Len(t, accounts.Users, 2)
}

func TestEveryEndpointAuthenticatesAndAuthorizes(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob, carol := h.User("alice"), h.User("bob"), h.User("carol")

	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/v1/me"}, {"GET", "/api/v1/users"}, {"GET", "/api/v1/rooms"}, {"POST", "/api/v1/rooms"},
		{"GET", "/api/v1/rooms/x"}, {"DELETE", "/api/v1/rooms/x"}, {"POST", "/api/v1/rooms/x/join"},
		{"POST", "/api/v1/rooms/x/key"}, {"POST", "/api/v1/rooms/x/leave"}, {"POST", "/api/v1/rooms/x/kick"},
		{"POST", "/api/v1/rooms/x/invite"}, {"GET", "/api/v1/rooms/x/members"}, {"GET", "/api/v1/invites/x"},
		{"POST", "/api/v1/invites/x/join"}, {"POST", "/api/v1/auth/logout"},
	} {
		for _, token := range []string{"", "rn_forged", alice.Token() + "x"} {
			status, eb := raw(t, ep.method, h.URL+ep.path, token, `{}`)
			require.Equal(t, 401, status, "%s %s with token %q", ep.method, ep.path, token)
			require.Equal(t, roomnet.CodeUnauthorized, eb.Error.Code)
		}
	}

	_, err := alice.Users(ctx, 0)
	requireCode(t, err, 403, roomnet.CodeForbidden)
	all, err := h.Admin.Users(ctx, 0)
	require.NoError(t, err)
	require.Len(t, all.Users, 4)

	// A private room is invisible to outsiders and joined only by invite.
	priv, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "secret", MaxPlayers: 4})
	require.NoError(t, err)
	list, err := bob.Rooms(ctx, "")
	require.NoError(t, err)
	require.Empty(t, list)
	_, err = bob.Room(ctx, priv.ID)
	requireCode(t, err, 404, roomnet.CodeNotFound)
	_, err = bob.Join(ctx, priv.ID, "")
	requireCode(t, err, 404, roomnet.CodeNotFound)
	_, err = bob.Members(ctx, priv.ID)
	requireCode(t, err, 404, roomnet.CodeNotFound)
	preview, err := bob.Invite(ctx, priv.InviteCode)
	require.NoError(t, err)
	require.Equal(t, "secret", preview.Name)
	require.Empty(t, preview.InviteCode, "a preview does not hand the code on")
	_, err = bob.JoinInvite(ctx, strings.ToLower(priv.InviteCode))
	require.NoError(t, err, "invite codes are case-insensitive")
	got, err := bob.Room(ctx, priv.ID)
	require.NoError(t, err)
	require.Equal(t, priv.InviteCode, got.InviteCode, "members see the invite code")
	_, err = carol.JoinInvite(ctx, "WRONGCDE")
	requireCode(t, err, 404, roomnet.CodeNotFound)

	// Rotating the invite is the host's; the old code stops working.
	_, err = bob.RotateInvite(ctx, priv.ID)
	requireCode(t, err, 403, roomnet.CodeForbidden)
	inv, err := alice.RotateInvite(ctx, priv.ID)
	require.NoError(t, err)
	require.Equal(t, "roomnet://join/"+inv.Code, inv.Link)
	_, err = carol.JoinInvite(ctx, priv.InviteCode)
	requireCode(t, err, 404, roomnet.CodeNotFound)

	// Password rooms.
	pw, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "pw", MaxPlayers: 4, Public: true, Password: "letmein"})
	require.NoError(t, err)
	_, err = carol.Join(ctx, pw.ID, "wrong")
	requireCode(t, err, 403, roomnet.CodeWrongPassword)
	_, err = carol.Join(ctx, pw.ID, "")
	requireCode(t, err, 403, roomnet.CodeWrongPassword)
	_, err = carol.Join(ctx, pw.ID, "letmein")
	require.NoError(t, err)

	// Only members leave; only hosts and admins close; admins may kick.
	requireCode(t, bob.Leave(ctx, pw.ID), 409, roomnet.CodeNotMember)
	requireCode(t, carol.CloseRoom(ctx, pw.ID), 403, roomnet.CodeForbidden)
	require.NoError(t, h.Admin.Kick(ctx, pw.ID, "carol"))
	requireCode(t, alice.Kick(ctx, pw.ID, "nobody"), 409, roomnet.CodeNotMember)
	requireCode(t, alice.Kick(ctx, pw.ID, "alice"), 400, roomnet.CodeBadRequest)
	require.NoError(t, h.Admin.CloseRoom(ctx, pw.ID))
	requireCode(t, alice.CloseRoom(ctx, pw.ID), 410, roomnet.CodeRoomClosed)

	// Logout revokes the token.
	require.NoError(t, carol.Logout(ctx))
	_, err = carol.Me(ctx)
	requireCode(t, err, 401, roomnet.CodeUnauthorized)
	_, _, err = h.Anon().Login(ctx, "carol", "wrong-password")
	requireCode(t, err, 401, roomnet.CodeUnauthorized)
	_, _, err = h.Anon().Login(ctx, "nobody", "wrong-password")
	requireCode(t, err, 401, roomnet.CodeUnauthorized)
}

func TestLimits(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Auth.LoginPerMinute = 3
		s.Config.Rooms.MaxRoomsPerUser = 2
	})
	ctx := roomnettest.Context(t, 60*time.Second)
	c := h.Anon()
	_, err := c.Register(ctx, "alice", "password-alice")
	require.NoError(t, err)
	alice, _, err := c.Login(ctx, "alice", "password-alice")
	require.NoError(t, err)
	// The harness's admin login took one attempt, register one, login one.
	_, _, err = c.Login(ctx, "alice", "password-alice")
	requireCode(t, err, 429, roomnet.CodeRateLimited)

	for i := range 2 {
		_, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "r" + string(rune('0'+i)), MaxPlayers: 2, Public: true})
		require.NoError(t, err)
	}
	_, err = alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "one too many", MaxPlayers: 2, Public: true})
	requireCode(t, err, 409, roomnet.CodeTooManyRooms)
}

func TestHealthAndMetrics(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Metrics.Listen = "127.0.0.1:0" })
	alice := h.User("alice")
	_, err := alice.CreateRoom(roomnettest.Context(t, 30*time.Second), roomnet.CreateRoom{Name: "r", MaxPlayers: 2, Public: true})
	require.NoError(t, err)
	get := func(url string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Ready once Headscale answers its health check (on a loaded machine
	// a check may time out and mark it not ready until the next one).
	require.Eventually(t, func() bool { status, _ := get(h.URL + "/healthz"); return status == 200 }, 30*time.Second, 100*time.Millisecond)
	status, _ := get(h.URL + "/metrics")
	require.Equal(t, 404, status, "metrics are not public on the API listener")
	require.NotEmpty(t, h.Server.MetricsURL())
	status, body := get(h.Server.MetricsURL())
	require.Equal(t, 200, status)
	require.Contains(t, body, "roomnet_rooms_open 1")
	require.Contains(t, body, "roomnet_members_active 1")
	require.Contains(t, body, "roomnet_headscale_ready 1")
	require.Contains(t, body, `roomnet_http_requests_total{code="201",method="POST",route="/api/v1/rooms"} 1`)
	status, _ = get(strings.TrimSuffix(h.Server.MetricsURL(), "/metrics") + "/api/v1/rooms")
	require.Equal(t, 404, status, "the metrics listener serves metrics only")
}

// Metrics are off unless configured.
func TestMetricsListenerIsOffByDefault(t *testing.T) {
	h := roomnettest.New(t)
	require.Empty(t, h.Server.MetricsURL())
	// Not an API path: the web pages' not-found page answers it.
	resp, err := http.Get(h.URL + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
	require.NotContains(t, string(body), "roomnet_http_requests_total")
}

// The whole server runs on PostgreSQL too (rooms, members, chat tables).
func TestRoomsOnPostgres(t *testing.T) {
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("%s unset: no PostgreSQL to run on", dbtest.EnvPostgres)
	}
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Database.Driver = "postgres"
		s.Config.Database.DSN = dsn
	})
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob, carol := h.User("alice"), h.User("bob"), h.User("carol")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "pg", MaxPlayers: 2, Public: true})
	require.NoError(t, err)
	_, err = bob.Join(ctx, room.ID, "")
	require.NoError(t, err)
	_, err = carol.Join(ctx, room.ID, "")
	requireCode(t, err, 409, roomnet.CodeRoomFull)
	require.NoError(t, alice.Kick(ctx, room.ID, "bob"))
	_, err = bob.Join(ctx, room.ID, "")
	requireCode(t, err, 403, roomnet.CodeKicked)
	members, err := alice.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)
	require.NoError(t, alice.CloseRoom(ctx, room.ID))
	list, err := carol.Rooms(ctx, "")
	require.NoError(t, err)
	require.Empty(t, list)
}

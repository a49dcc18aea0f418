package apispec_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

// relayToken lets the conformance server register standalone relays.
const relayToken = "relay-token-for-the-apispec-tests"

// env drives a live server and checks every exchange against the spec.
type env struct {
	base string
	spec *spec
	cov  *coverage
	hc   *http.Client
}

// call is one request and the answer a test wants.
type call struct {
	method, path string
	body         string
	token        string            // bearer token
	header       map[string]string // more headers (cookie, CSRF token, origin)
	bad          bool              // breaks the contract on purpose: the request is not validated
	want         int               // status
	code         string            // error code, for errors
}

func newEnv(t *testing.T, h *roomnettest.Harness, cov *coverage) *env {
	return &env{base: h.URL, spec: loadSpec(t), cov: cov, hc: &http.Client{Timeout: 30 * time.Second}}
}

// do sends c, checks the exchange against the spec (send) and checks the
// status and error code the test wants; it returns the body.
func (e *env) do(t *testing.T, c call) []byte {
	t.Helper()
	status, _, body := e.send(t, c)
	require.Equal(t, c.want, status, "%s %s: %s", c.method, c.path, body)
	if c.code != "" {
		var eb roomnet.ErrorBody
		require.NoError(t, json.Unmarshal(body, &eb))
		require.Equal(t, c.code, eb.Error.Code, "%s %s: %s", c.method, c.path, body)
	}
	return body
}

// send sends c, validates the request (unless bad) and the answer against
// the spec and records the status for coverage.
func (e *env) send(t *testing.T, c call) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends event streams
	req, err := http.NewRequestWithContext(ctx, c.method, e.base+c.path, strings.NewReader(c.body))
	require.NoError(t, err)
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	o := e.spec.find(c.method, req.URL.Path)
	require.NotNil(t, o, "%s %s: no operation in the spec", c.method, c.path)
	if !c.bad {
		require.NoError(t, e.spec.checkRequest(o, req, []byte(c.body)), "a request the test means to be valid")
	}
	resp, err := e.hc.Do(req)
	require.NoError(t, err)
	body, streamed, err := readBody(resp)
	require.NoError(t, err)
	e.cov.add(o, resp.StatusCode)
	require.NoError(t, e.spec.checkResponse(o, resp, body, streamed))
	return resp.StatusCode, resp.Header, body
}

func decodeInto[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), "%s", b)
	return v
}

func creds(name, password string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q}`, name, password)
}

const big = 70 << 10 // over the 64 KiB body limit

func oversized() string { return `{"username":"` + strings.Repeat("a", big) + `"}` }

// foreign is a browser request from another site's page.
var foreign = map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}

// TestEveryRouteConformsToTheSpec drives every operation of the spec
// against a real server, success and failure, and checks each request and
// answer against the spec; then every status the spec lists must have
// been seen, but for those a test cannot cheaply cause.
func TestEveryRouteConformsToTheSpec(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.DERP.RelayToken = relayToken
		s.Config.Rooms.MaxRoomsPerUser = 3
	})
	cov := &coverage{}
	e := newEnv(t, h, cov)
	admin := h.Admin.Token()
	const v1 = "/api/v1"

	// Accounts.
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		e.do(t, call{method: "POST", path: v1 + "/auth/register", body: creds(name, "password-"+name), want: 201})
	}
	e.do(t, call{method: "POST", path: v1 + "/auth/register", body: creds("alice", "password-alice"), want: 409, code: "username_taken"})
	e.do(t, call{method: "POST", path: v1 + "/auth/register", body: creds("A!", "password"), bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: v1 + "/auth/register", body: `{"username":"eve","password":"password-eve","role":"admin"}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: v1 + "/auth/register", body: oversized(), bad: true, want: 413, code: "body_too_large"})
	e.do(t, call{method: "POST", path: v1 + "/auth/register", body: creds("eve", "password-eve"), header: foreign, want: 403, code: "csrf_failed"})

	login := func(name string) string {
		b := e.do(t, call{method: "POST", path: v1 + "/auth/login", body: creds(name, "password-"+name), want: 200})
		return decodeInto[roomnet.LoginResponse](t, b).Token
	}
	alice, bob, carol := login("alice"), login("bob"), login("carol")
	e.do(t, call{method: "POST", path: v1 + "/auth/login", body: creds("alice", "wrong-password"), want: 401, code: "unauthorized"})
	e.do(t, call{method: "POST", path: v1 + "/auth/login", body: `{"username":"alice"`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: v1 + "/auth/login", body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/auth/login", body: creds("alice", "password-alice"), header: foreign, want: 403, code: "csrf_failed"})

	// Browser sessions.
	status, hdr, sb := e.send(t, call{method: "POST", path: v1 + "/auth/session", body: creds("dave", "password-dave")})
	require.Equal(t, http.StatusOK, status, "%s", sb)
	sess := decodeInto[roomnet.Session](t, sb)
	cookie := sessionCookie(t, hdr)
	withCookie := map[string]string{"Cookie": "roomnet_session=" + cookie}
	withCSRF := map[string]string{"Cookie": "roomnet_session=" + cookie, "X-CSRF-Token": sess.CSRFToken}
	e.do(t, call{method: "POST", path: v1 + "/auth/session", body: creds("dave", "nope-nope"), want: 401})
	e.do(t, call{method: "POST", path: v1 + "/auth/session", body: `[]`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: v1 + "/auth/session", body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/auth/session", body: creds("dave", "password-dave"), header: foreign, want: 403, code: "csrf_failed"})
	e.do(t, call{method: "GET", path: v1 + "/auth/session", header: withCookie, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/auth/session", want: 401, code: "unauthorized"})
	e.do(t, call{method: "GET", path: v1 + "/me", token: alice, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/me", header: withCookie, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/me", token: "rn_not-a-token", want: 401})

	// Rooms.
	createBody := `{"name":"Friday night","game":"minecraft","max_players":8,"public":true,"password":"secret-pw","ports":["25565/tcp","27015/udp"]}`
	pub := decodeInto[roomnet.CreateRoomResponse](t, e.do(t, call{method: "POST", path: v1 + "/rooms", token: alice, body: createBody, want: 201}))
	priv := decodeInto[roomnet.CreateRoomResponse](t, e.do(t, call{method: "POST", path: v1 + "/rooms", token: alice, body: `{"name":"friends","max_players":4,"public":false}`, want: 201}))
	small := decodeInto[roomnet.CreateRoomResponse](t, e.do(t, call{method: "POST", path: v1 + "/rooms", token: alice, body: `{"name":"duel","game":"chess","max_players":2,"public":true}`, want: 201}))
	e.do(t, call{method: "POST", path: v1 + "/rooms", token: alice, body: `{"name":"one too many","max_players":2,"public":true}`, want: 409, code: "too_many_rooms"})
	e.do(t, call{method: "POST", path: v1 + "/rooms", token: bob, body: `{"name":"x","max_players":1}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: v1 + "/rooms", token: bob, body: `{"name":"x","max_players":4,"admin":true}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: v1 + "/rooms", token: bob, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/rooms", body: `{"name":"x","max_players":4}`, want: 401})
	e.do(t, call{method: "POST", path: v1 + "/rooms", header: withCookie, body: `{"name":"x","max_players":4}`, want: 403, code: "csrf_failed"})

	e.do(t, call{method: "GET", path: v1 + "/rooms", token: bob, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/rooms?game=minecraft", token: bob, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/rooms?game=" + strings.Repeat("g", 65), token: bob, bad: true, want: 400})
	e.do(t, call{method: "GET", path: v1 + "/rooms", want: 401})
	e.do(t, call{method: "GET", path: v1 + "/rooms/" + pub.ID, token: bob, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/rooms/" + pub.ID, token: alice, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/rooms/" + priv.ID, token: bob, want: 404, code: "not_found"})
	e.do(t, call{method: "GET", path: v1 + "/rooms/nope", token: bob, want: 404})
	e.do(t, call{method: "GET", path: v1 + "/rooms/" + pub.ID, want: 401})

	pubRoom := v1 + "/rooms/" + pub.ID
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: bob, body: `{"password":"secret-pw"}`, want: 200})
	// A member whose node is not online joining again (a retry after a
	// lost answer) gets a fresh grant: join is idempotent.
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: bob, body: `{"password":"secret-pw"}`, want: 200})
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: carol, body: `{"password":"guess"}`, want: 403, code: "wrong_password"})
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: carol, want: 403, code: "wrong_password"})
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: carol, body: `{"pw":"secret-pw"}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: carol, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: pubRoom + "/join", header: withCookie, want: 403, code: "csrf_failed"})
	e.do(t, call{method: "POST", path: pubRoom + "/join", want: 401})
	e.do(t, call{method: "POST", path: v1 + "/rooms/nope/join", token: carol, want: 404})
	e.do(t, call{method: "POST", path: v1 + "/rooms/" + priv.ID + "/join", token: carol, want: 404, code: "not_found"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/" + small.ID + "/join", token: bob, want: 200})
	e.do(t, call{method: "POST", path: v1 + "/rooms/" + small.ID + "/join", token: carol, want: 409, code: "room_full"})

	e.do(t, call{method: "POST", path: pubRoom + "/key", token: bob, want: 200})
	e.do(t, call{method: "POST", path: pubRoom + "/key", token: carol, want: 409, code: "not_member"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/nope/key", token: carol, want: 404})
	e.do(t, call{method: "POST", path: pubRoom + "/key", want: 401})
	e.do(t, call{method: "POST", path: pubRoom + "/key", header: withCookie, want: 403, code: "csrf_failed"})

	paths := `{"links":[{"peer":"alice","ip":"100.64.0.1","direct":true,"addr":"127.0.0.1:41641","rtt_ms":1.5},{"peer":"x","ip":"100.64.0.9","direct":false,"relay":"roomnet"}]}`
	e.do(t, call{method: "POST", path: pubRoom + "/paths", token: bob, body: paths, want: 204})
	e.do(t, call{method: "POST", path: pubRoom + "/paths", token: bob, body: `{"links":[{"peer":"a","ip":"b","direct":true,"rtt_ms":70000}]}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: pubRoom + "/paths", token: bob, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: pubRoom + "/paths", token: carol, body: `{"links":[]}`, want: 409, code: "not_member"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/nope/paths", token: carol, body: `{"links":[]}`, want: 404})
	e.do(t, call{method: "POST", path: pubRoom + "/paths", body: `{"links":[]}`, want: 401})
	e.do(t, call{method: "POST", path: pubRoom + "/paths", header: withCookie, body: `{"links":[]}`, want: 403, code: "csrf_failed"})

	mb := e.do(t, call{method: "GET", path: pubRoom + "/members", token: alice, want: 200})
	members := decodeInto[roomnet.MemberList](t, mb).Members
	require.Len(t, members, 2)
	e.do(t, call{method: "GET", path: pubRoom + "/members", token: carol, want: 403, code: "forbidden"})
	e.do(t, call{method: "GET", path: v1 + "/rooms/" + priv.ID + "/members", token: carol, want: 404})
	e.do(t, call{method: "GET", path: pubRoom + "/members", want: 401})

	e.do(t, call{method: "GET", path: v1 + "/me/rooms", token: bob, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/me/rooms", want: 401})

	// Invites.
	e.do(t, call{method: "GET", path: v1 + "/invites/" + priv.InviteCode, token: carol, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/invites/" + strings.ToLower(priv.InviteCode), token: carol, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/invites/NOPE2345", token: carol, want: 404})
	e.do(t, call{method: "GET", path: v1 + "/invites/" + priv.InviteCode, want: 401})
	e.do(t, call{method: "POST", path: v1 + "/invites/" + priv.InviteCode + "/join", token: carol, want: 200})
	e.do(t, call{method: "POST", path: v1 + "/invites/" + priv.InviteCode + "/join", token: carol, want: 200}) // a retried join of a member with no node online: a fresh grant
	e.do(t, call{method: "POST", path: v1 + "/invites/" + small.InviteCode + "/join", token: carol, want: 409, code: "room_full"})
	e.do(t, call{method: "POST", path: v1 + "/invites/NOPE2345/join", token: carol, want: 404})
	e.do(t, call{method: "POST", path: v1 + "/invites/" + priv.InviteCode + "/join", want: 401})
	e.do(t, call{method: "POST", path: v1 + "/invites/" + priv.InviteCode + "/join", header: withCookie, want: 403, code: "csrf_failed"})

	e.do(t, call{method: "POST", path: pubRoom + "/invite", token: alice, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/invites/" + pub.InviteCode, token: carol, want: 404}) // the old code stopped working
	e.do(t, call{method: "POST", path: pubRoom + "/invite", token: bob, want: 403, code: "forbidden"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/nope/invite", token: alice, want: 404})
	e.do(t, call{method: "POST", path: pubRoom + "/invite", want: 401})

	// Kicks.
	e.do(t, call{method: "POST", path: pubRoom + "/kick", token: alice, body: `{"username":"bob"}`, want: 204})
	e.do(t, call{method: "POST", path: pubRoom + "/join", token: bob, body: `{"password":"secret-pw"}`, want: 403, code: "kicked"})
	e.do(t, call{method: "POST", path: pubRoom + "/key", token: bob, want: 403, code: "kicked"})
	e.do(t, call{method: "POST", path: pubRoom + "/kick", token: alice, body: `{"username":"alice"}`, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: pubRoom + "/kick", token: alice, body: `{}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: pubRoom + "/kick", token: alice, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: pubRoom + "/kick", token: alice, body: `{"username":"carol"}`, want: 409, code: "not_member"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/" + priv.ID + "/kick", token: carol, body: `{"username":"alice"}`, want: 403, code: "forbidden"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/nope/kick", token: alice, body: `{"username":"bob"}`, want: 404})
	e.do(t, call{method: "POST", path: pubRoom + "/kick", body: `{"username":"bob"}`, want: 401})
	e.do(t, call{method: "POST", path: pubRoom + "/kick", header: withCookie, body: `{"username":"bob"}`, want: 403, code: "csrf_failed"})

	// Leaving.
	privRoom := v1 + "/rooms/" + priv.ID
	e.do(t, call{method: "POST", path: privRoom + "/leave", token: carol, want: 204})
	e.do(t, call{method: "POST", path: privRoom + "/leave", token: carol, want: 409, code: "not_member"})
	e.do(t, call{method: "POST", path: v1 + "/rooms/nope/leave", token: carol, want: 404})
	e.do(t, call{method: "POST", path: privRoom + "/leave", want: 401})
	e.do(t, call{method: "POST", path: privRoom + "/leave", header: withCookie, want: 403, code: "csrf_failed"})

	// Closing, and what a closed room answers.
	smallRoom := v1 + "/rooms/" + small.ID
	e.do(t, call{method: "DELETE", path: smallRoom, token: bob, want: 403, code: "forbidden"})
	e.do(t, call{method: "DELETE", path: smallRoom, header: withCookie, want: 403, code: "csrf_failed"})
	e.do(t, call{method: "DELETE", path: smallRoom, want: 401})
	e.do(t, call{method: "DELETE", path: v1 + "/rooms/nope", token: alice, want: 404})
	e.do(t, call{method: "DELETE", path: smallRoom, token: alice, want: 204})
	e.do(t, call{method: "DELETE", path: smallRoom, token: alice, want: 410, code: "room_closed"})
	e.do(t, call{method: "POST", path: smallRoom + "/join", token: carol, want: 410, code: "room_closed"})
	e.do(t, call{method: "POST", path: smallRoom + "/key", token: alice, want: 410})
	e.do(t, call{method: "POST", path: smallRoom + "/paths", token: alice, body: `{"links":[]}`, want: 410})
	e.do(t, call{method: "POST", path: smallRoom + "/leave", token: alice, want: 410})
	e.do(t, call{method: "POST", path: smallRoom + "/kick", token: alice, body: `{"username":"bob"}`, want: 410})
	e.do(t, call{method: "POST", path: smallRoom + "/invite", token: alice, want: 410})
	e.do(t, call{method: "GET", path: v1 + "/invites/" + small.InviteCode, token: carol, want: 410})
	e.do(t, call{method: "POST", path: v1 + "/invites/" + small.InviteCode + "/join", token: carol, want: 410})
	e.do(t, call{method: "GET", path: smallRoom + "/members", token: alice, want: 200})

	// Users (admins).
	e.do(t, call{method: "GET", path: v1 + "/users", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/users?q=da&after=1", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/users?after=x", token: admin, bad: true, want: 400})
	e.do(t, call{method: "GET", path: v1 + "/users", token: alice, want: 403, code: "forbidden"})
	e.do(t, call{method: "GET", path: v1 + "/users", want: 401})

	// Bans.
	e.do(t, call{method: "POST", path: v1 + "/users/carol/ban", token: admin, want: 204})
	e.do(t, call{method: "GET", path: v1 + "/me", token: carol, want: 401})
	e.do(t, call{method: "POST", path: v1 + "/auth/login", body: creds("carol", "password-carol"), want: 403, code: "banned"})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/ban", token: admin, body: `{"seconds":3600,"reason":"spam"}`, want: 204})
	banned := decodeInto[roomnet.ErrorBody](t, e.do(t, call{method: "POST", path: v1 + "/auth/login", body: creds("carol", "password-carol"), want: 403, code: "banned"}))
	require.Equal(t, "spam", banned.Error.Reason)
	require.NotNil(t, banned.Error.Until)
	e.do(t, call{method: "POST", path: v1 + "/auth/session", body: creds("carol", "password-carol"), want: 403, code: "banned"})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/ban", token: admin, body: `{"seconds":0}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/ban", token: admin, body: `{"seconds":60,"why":"x"}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/ban", token: admin, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/users/admin/ban", token: admin, want: 400})
	e.do(t, call{method: "POST", path: v1 + "/users/nobody/ban", token: admin, want: 404})
	e.do(t, call{method: "POST", path: v1 + "/users/bob/ban", token: alice, want: 403})
	e.do(t, call{method: "POST", path: v1 + "/users/bob/ban", want: 401})
	e.do(t, call{method: "POST", path: v1 + "/users/bob/ban", header: withCookie, want: 403, code: "csrf_failed"})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/unban", token: admin, want: 204})
	e.do(t, call{method: "POST", path: v1 + "/users/nobody/unban", token: admin, want: 404})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/unban", token: alice, want: 403})
	e.do(t, call{method: "POST", path: v1 + "/users/carol/unban", want: 401})
	e.do(t, call{method: "GET", path: v1 + "/me", token: login("carol"), want: 200})

	// Relays.
	hb := `{"region_id":950,"region_code":"edge","region_name":"Edge","node":{"name":"950a","hostname":"127.0.0.1","ipv4":"127.0.0.1","derp_port":3340,"stun_port":-1,"insecure":true},"stats":{"clients":1,"bytes_received":10,"bytes_sent":20}}`
	e.do(t, call{method: "POST", path: v1 + "/relays/heartbeat", token: relayToken, body: hb, want: 204})
	e.do(t, call{method: "POST", path: v1 + "/relays/heartbeat", token: alice, body: hb, want: 401})
	e.do(t, call{method: "POST", path: v1 + "/relays/heartbeat", token: relayToken, body: `{"region_id":0}`, bad: true, want: 400})
	e.do(t, call{method: "POST", path: v1 + "/relays/heartbeat", token: relayToken, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "GET", path: v1 + "/derpmap", want: 200})
	e.do(t, call{method: "GET", path: v1 + "/relays", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/relays", token: alice, want: 403})
	e.do(t, call{method: "GET", path: v1 + "/relays", want: 401})

	// Administration.
	for _, p := range []string{"/admin/overview", "/admin/rooms", "/admin/shards", "/admin/nodes", "/admin/audit", "/admin/events"} {
		e.do(t, call{method: "GET", path: v1 + p, token: alice, want: 403, code: "forbidden"})
		e.do(t, call{method: "GET", path: v1 + p, want: 401})
	}
	e.do(t, call{method: "GET", path: v1 + "/admin/overview", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/overview?range=15m", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/overview?range=24h", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/overview?range=7d", token: admin, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "GET", path: v1 + "/admin/shards", token: admin, want: 200})

	// Nodes: alice's node in her room, expired then deleted.
	roomnettest.Node(t, pub.Join, "alice-node")
	nodes := decodeInto[roomnet.NodeList](t, e.do(t, call{method: "GET", path: v1 + "/admin/nodes", token: admin, want: 200}))
	var mine *roomnet.ShardNode
	for i, n := range nodes.Nodes {
		if n.RoomID == pub.ID && n.Username == "alice" {
			mine = &nodes.Nodes[i]
		}
	}
	require.NotNil(t, mine, "alice's node in the list: %+v", nodes)
	require.Empty(t, nodes.Unavailable)
	nodePath := fmt.Sprintf("%s/admin/nodes/%s/%d", v1, mine.Shard, mine.ID)
	for _, c := range []call{
		{method: "POST", path: nodePath + "/expire", token: alice, want: 403, code: "forbidden"},
		{method: "POST", path: nodePath + "/expire", want: 401},
		{method: "POST", path: nodePath + "/expire", header: withCookie, want: 403, code: "csrf_failed"},
		{method: "POST", path: v1 + "/admin/nodes/nope/1/expire", token: admin, want: 404},
		{method: "POST", path: fmt.Sprintf("%s/admin/nodes/%s/%d/expire", v1, mine.Shard, mine.ID+1000), token: admin, want: 404},
		{method: "POST", path: v1 + "/admin/nodes/default/x/expire", token: admin, bad: true, want: 400},
		{method: "POST", path: nodePath + "/expire", token: admin, want: 200},
		{method: "DELETE", path: nodePath, token: alice, want: 403, code: "forbidden"},
		{method: "DELETE", path: nodePath, want: 401},
		{method: "DELETE", path: nodePath, header: withCookie, want: 403, code: "csrf_failed"},
		{method: "DELETE", path: v1 + "/admin/nodes/nope/1", token: admin, want: 404},
		{method: "DELETE", path: v1 + "/admin/nodes/default/0", token: admin, bad: true, want: 400},
		{method: "DELETE", path: nodePath, token: admin, want: 200},
	} {
		e.do(t, c)
	}
	e.do(t, call{method: "GET", path: v1 + "/admin/events", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/rooms", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/rooms?state=closed&game=chess&q=du", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/rooms?state=open&before=" + small.ID, token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/rooms?state=sleeping", token: admin, bad: true, want: 400})

	role := v1 + "/admin/users/dave/role"
	e.do(t, call{method: "POST", path: role, token: admin, body: `{"role":"admin"}`, want: 200})
	e.do(t, call{method: "POST", path: role, token: admin, body: `{"role":"player"}`, want: 200})
	e.do(t, call{method: "POST", path: role, token: admin, body: `{"role":"root"}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: role, token: admin, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/admin/users/admin/role", token: admin, body: `{"role":"player"}`, want: 400})
	e.do(t, call{method: "POST", path: v1 + "/admin/users/nobody/role", token: admin, body: `{"role":"admin"}`, want: 404})
	e.do(t, call{method: "POST", path: role, token: alice, body: `{"role":"admin"}`, want: 403})
	e.do(t, call{method: "POST", path: role, body: `{"role":"admin"}`, want: 401})

	mute := v1 + "/admin/users/carol/mute"
	e.do(t, call{method: "POST", path: mute, token: admin, body: `{"seconds":600,"reason":"spam"}`, want: 200})
	users := decodeInto[roomnet.UserList](t, e.do(t, call{method: "GET", path: v1 + "/users?q=carol", token: admin, want: 200}))
	require.NotNil(t, users.Users[0].MutedUntil, "the listing shows the mute")
	e.do(t, call{method: "POST", path: mute, token: admin, body: `{"seconds":0}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: mute, token: admin, body: `{"seconds":2592001}`, bad: true, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: mute, token: admin, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/admin/users/nobody/mute", token: admin, body: `{"seconds":60}`, want: 404})
	e.do(t, call{method: "POST", path: mute, token: alice, body: `{"seconds":60}`, want: 403})
	e.do(t, call{method: "POST", path: mute, body: `{"seconds":60}`, want: 401})
	e.do(t, call{method: "DELETE", path: mute, token: admin, want: 200})
	e.do(t, call{method: "DELETE", path: v1 + "/admin/users/nobody/mute", token: admin, want: 404})
	e.do(t, call{method: "DELETE", path: mute, token: alice, want: 403})
	e.do(t, call{method: "DELETE", path: mute, want: 401})

	conv := "room:" + pub.ID
	seq := chatText(t, h, alice, conv, "to be deleted")
	del := v1 + "/admin/chat/delete"
	e.do(t, call{method: "POST", path: del, token: admin, body: fmt.Sprintf(`{"conv":%q,"seq":%d}`, conv, seq), want: 204})
	e.do(t, call{method: "POST", path: del, token: admin, body: fmt.Sprintf(`{"conv":%q,"seq":%d}`, conv, seq+100), want: 404})
	e.do(t, call{method: "POST", path: del, token: admin, body: `{"conv":"","seq":1}`, bad: true, want: 400})
	e.do(t, call{method: "POST", path: del, token: admin, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: del, token: alice, body: `{"conv":"lobby:main","seq":1}`, want: 403})
	e.do(t, call{method: "POST", path: del, body: `{"conv":"lobby:main","seq":1}`, want: 401})

	e.do(t, call{method: "GET", path: v1 + "/admin/users/carol", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/users/nobody", token: admin, want: 404})
	e.do(t, call{method: "GET", path: v1 + "/admin/users/carol", token: alice, want: 403})
	e.do(t, call{method: "GET", path: v1 + "/admin/users/carol", want: 401})
	profile := decodeInto[roomnet.UserProfile](t, e.do(t, call{method: "GET", path: v1 + "/admin/users/alice", token: admin, want: 200}))
	require.NotEmpty(t, profile.Rooms)

	purge := v1 + "/admin/users/alice/purge-messages"
	chatText(t, h, alice, conv, "to be purged")
	purged := decodeInto[roomnet.Purged](t, e.do(t, call{method: "POST", path: purge, token: admin, body: fmt.Sprintf(`{"conv":%q}`, conv), want: 200}))
	require.Equal(t, 1, purged.Purged)
	e.do(t, call{method: "POST", path: purge, token: admin, want: 200})
	e.do(t, call{method: "POST", path: purge, token: admin, body: `{"conv":"nowhere"}`, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: purge, token: admin, body: `{"conv":"lobby:main","all":true}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: purge, token: admin, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: v1 + "/admin/users/nobody/purge-messages", token: admin, want: 404})
	e.do(t, call{method: "POST", path: purge, token: alice, want: 403})
	e.do(t, call{method: "POST", path: purge, want: 401})

	ann := v1 + "/admin/chat/announce"
	e.do(t, call{method: "POST", path: ann, token: admin, body: fmt.Sprintf(`{"conv":%q,"text":"server restarts at noon"}`, conv), want: 200})
	e.do(t, call{method: "POST", path: ann, token: admin, body: `{"conv":"lobby:main","text":"hello lobby"}`, want: 200})
	e.do(t, call{method: "POST", path: ann, token: admin, body: `{"conv":"nowhere","text":"x"}`, want: 400, code: "bad_request"})
	e.do(t, call{method: "POST", path: ann, token: admin, body: `{"conv":"lobby:main","text":""}`, bad: true, want: 400})
	e.do(t, call{method: "POST", path: ann, token: admin, body: oversized(), bad: true, want: 413})
	e.do(t, call{method: "POST", path: ann, token: alice, body: `{"conv":"lobby:main","text":"x"}`, want: 403})
	e.do(t, call{method: "POST", path: ann, body: `{"conv":"lobby:main","text":"x"}`, want: 401})

	hist := v1 + "/admin/chat/history?conv=" + conv
	page := decodeInto[roomnet.ChatHistory](t, e.do(t, call{method: "GET", path: hist, token: admin, want: 200}))
	require.NotEmpty(t, page.Messages)
	e.do(t, call{method: "GET", path: hist + "&before=2&limit=1", token: admin, want: 200})
	e.do(t, call{method: "GET", path: hist + "&after=1", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/chat/history?conv=lobby:main", token: admin, want: 200})
	e.do(t, call{method: "GET", path: hist + "&before=2&after=1", token: admin, want: 400, code: "bad_request"})
	e.do(t, call{method: "GET", path: hist + "&limit=201", token: admin, want: 400, code: "bad_request"})
	e.do(t, call{method: "GET", path: hist + "&before=x", token: admin, bad: true, want: 400})
	e.do(t, call{method: "GET", path: v1 + "/admin/chat/history?conv=dm:1:2", token: admin, want: 400, code: "bad_request"})
	e.do(t, call{method: "GET", path: v1 + "/admin/chat/history?conv=room:nope", token: admin, want: 404})
	e.do(t, call{method: "GET", path: hist, token: alice, want: 403, code: "forbidden"})
	e.do(t, call{method: "GET", path: hist, want: 401})

	e.do(t, call{method: "GET", path: v1 + "/admin/audit", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/audit?before=3", token: admin, want: 200})
	e.do(t, call{method: "GET", path: v1 + "/admin/audit?before=x", token: admin, bad: true, want: 400})

	e.membershipEvent(t, admin, func() {
		e.do(t, call{method: "POST", path: pubRoom + "/join", token: login("dave"), body: `{"password":"secret-pw"}`, want: 200})
	})

	// The document itself, and operations.
	status, hdr, _ = e.send(t, call{method: "GET", path: v1 + "/openapi.json"})
	require.Equal(t, http.StatusOK, status)
	e.do(t, call{method: "GET", path: v1 + "/openapi.json", header: map[string]string{"If-None-Match": hdr.Get("ETag")}, want: 304})
	ready := time.Now().Add(30 * time.Second) // Headscale's health check may lag on a loaded machine
	for {
		status, _, body := e.send(t, call{method: "GET", path: "/healthz"}) // 200 and 503 are both in the spec
		if status == http.StatusOK {
			break
		}
		require.True(t, time.Now().Before(ready), "never ready: %s", body)
		time.Sleep(200 * time.Millisecond)
	}

	// DERP admission, as relays ask it.
	stranger := `{"NodePublic":"nodekey:` + strings.Repeat("ab", 32) + `","Source":"127.0.0.1"}`
	verdict := e.do(t, call{method: "POST", path: "/verify", body: stranger, want: 200})
	require.JSONEq(t, `{"Allow":false}`, string(verdict))
	e.do(t, call{method: "POST", path: "/verify", body: `{"NodePublic":"nodekey:00"}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: "/verify", body: `{}`, bad: true, want: 400, code: "invalid_json"})
	e.do(t, call{method: "POST", path: "/verify", body: oversized(), bad: true, want: 413})

	// Signing out.
	spare := login("bob")
	e.do(t, call{method: "POST", path: v1 + "/auth/logout", token: spare, want: 204})
	e.do(t, call{method: "POST", path: v1 + "/auth/logout", token: spare, want: 401})
	e.do(t, call{method: "POST", path: v1 + "/auth/logout", header: withCookie, want: 403, code: "csrf_failed"})
	e.do(t, call{method: "DELETE", path: v1 + "/auth/session", header: withCookie, want: 403, code: "csrf_failed"})
	e.do(t, call{method: "DELETE", path: v1 + "/auth/session", header: withCSRF, want: 204})
	e.do(t, call{method: "DELETE", path: v1 + "/auth/session", header: withCSRF, want: 401})

	// What is not an operation: unknown routes and methods.
	for _, tc := range []struct {
		method, path, token string
		status              int
		code                string
	}{
		{"GET", v1 + "/nothing", alice, 404, "not_found"},
		{"GET", v1 + "/nothing", "", 401, "unauthorized"},
		{"GET", v1 + "/admin/nothing", alice, 403, "forbidden"},
		{"PUT", v1 + "/rooms", alice, 404, "not_found"}, // a known path with another method
		{"PATCH", v1 + "/rooms/" + pub.ID, "", 401, "unauthorized"},
	} {
		status, code := e.raw(t, tc.method, tc.path, tc.token)
		require.Equal(t, []any{tc.status, tc.code}, []any{status, code}, "%s %s", tc.method, tc.path)
	}

	e.rateLimits(t)

	missing := cov.missing(e.spec, waived)
	require.Empty(t, missing, "statuses the spec lists that no request caused; cause them or waive them with a reason")
}

// waived are the statuses a test cannot cheaply cause. Each must still be
// what the server answers in that case.
func waived(op, status string) bool {
	switch status {
	case "500": // a failing database
		return true
	case "503": // Headscale not answering (and /healthz not ready)
		return true
	case "429": // rateLimits causes it on one route of each limiter; the middleware is shared
		return true
	}
	switch op + " " + status {
	case "GET /api/v1/admin/overview 404", "GET /api/v1/admin/events 404":
		return true // only when the server runs without figures or an event hub
	}
	return false
}

// membershipEvent reads the admin event stream while trigger causes a
// membership event, and validates the event's data against the schema
// the spec gives for the stream's events.
func (e *env) membershipEvent(t *testing.T, token string, trigger func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.base+"/api/v1/admin/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	o := e.spec.find("GET", req.URL.Path)
	e.cov.add(o, resp.StatusCode)
	require.NoError(t, e.spec.checkResponse(o, resp, nil, true))
	require.Equal(t, http.StatusOK, resp.StatusCode)

	trigger()
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			require.Equal(t, "membership", event)
			require.NoError(t, e.spec.validate(o.ptr+"/responses/200/content/text~1event-stream/x-event-data", []byte(data)))
			return
		}
	}
	t.Fatalf("no event on the stream: %v", sc.Err())
}

// raw sends a request that no operation describes and returns the
// status and error code.
func (e *env) raw(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var eb roomnet.ErrorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
	return resp.StatusCode, eb.Error.Code
}

// sessionCookie returns the session cookie an answer sets.
func sessionCookie(t *testing.T, h http.Header) string {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == "roomnet_session" {
			require.True(t, c.HttpOnly)
			require.Equal(t, http.SameSiteStrictMode, c.SameSite)
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// chatText sends a text message over the real chat WebSocket and returns
// its seq.
func chatText(t *testing.T, h *roomnettest.Harness, token, conv, body string) uint64 {
	t.Helper()
	ctx := roomnettest.Context(t, 30*time.Second)
	cc, err := chatclient.Dial(ctx, chatclient.Options{URL: "ws" + strings.TrimPrefix(h.URL, "http") + "/ws", Token: token, MaxAttempts: 2})
	require.NoError(t, err)
	defer cc.Close()
	p := cc.Send(conv, body)
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("send neither acknowledged nor failed")
	}
	seq, err := p.Result()
	require.NoError(t, err)
	return seq
}

// rateLimits causes 429 on a route of each limiter of a server with tiny
// limits: the per-address limit of every route and the login limit.
func (e *env) rateLimits(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Auth.LoginPerMinute = 1 // the harness's admin login takes it
		s.Server.APIRequestsPerSec = 1
	})
	le := &env{base: h.URL, spec: e.spec, cov: e.cov, hc: e.hc}
	le.do(t, call{method: "POST", path: "/api/v1/auth/login", body: creds("admin", "x-x-x-x-x"), want: 429, code: "rate_limited"})
	token := h.Admin.Token()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if status, _, _ := le.send(t, call{method: "GET", path: "/api/v1/me", token: token}); status == http.StatusTooManyRequests {
			return
		}
	}
	t.Fatal("the per-address limit never answered 429")
}

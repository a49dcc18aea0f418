package api_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// Request bodies are decoded strictly, and credentials follow rules that
// refuse the guessable ones; each refusal is a 400 whose message names the
// rule, and stores nothing.
func TestStrictBodiesAndCredentialRules(t *testing.T) {
	h := roomnettest.New(t)
	alice := h.User("alice")
	ctx := roomnettest.Context(t, 60*time.Second)
	rooms := h.URL + "/api/v1/rooms"
	register := h.URL + "/api/v1/auth/register"
	cases := []struct {
		name, url, body string
		code, msg       string
	}{
		{"key in another case", rooms, `{"NAME":"a","max_players":4}`, roomnet.CodeInvalidJSON, "NAME"},
		{"key with one capital", rooms, `{"name":"a","Max_Players":4}`, roomnet.CodeInvalidJSON, "Max_Players"},
		{"duplicate key", rooms, `{"name":"a","name":"b","max_players":4}`, roomnet.CodeInvalidJSON, "duplicate"},
		{"invalid UTF-8", rooms, "{\"name\":\"a\xff\",\"max_players\":4}", roomnet.CodeInvalidJSON, "UTF-8"},
		{"one-character room password", rooms, `{"name":"a","max_players":4,"password":"x"}`, roomnet.CodeBadRequest, "6 to 72"},
		{"register key in another case", register, `{"Username":"zed","password":"a-fine-password"}`, roomnet.CodeInvalidJSON, "Username"},
		{"password is the username", register, `{"username":"zedzedzed","password":"zedzedzed"}`, roomnet.CodeBadRequest, "username"},
		{"username and a few characters", register, `{"username":"zed","password":"zed12345"}`, roomnet.CodeBadRequest, "username"},
		{"common password", register, `{"username":"zed","password":"Password123"}`, roomnet.CodeBadRequest, "common"},
		{"admin lookalike", register, `{"username":"adm1n","password":"a-fine-password"}`, roomnet.CodeBadRequest, "reserved"},
		{"admin with a dot", register, `{"username":"admin.","password":"a-fine-password"}`, roomnet.CodeBadRequest, "reserved"},
		{"admin with an underscore", register, `{"username":"admin_","password":"a-fine-password"}`, roomnet.CodeBadRequest, "reserved"},
		{"root lookalike", register, `{"username":"r00t","password":"a-fine-password"}`, roomnet.CodeBadRequest, "reserved"},
		{"moderator", register, `{"username":"moderator","password":"a-fine-password"}`, roomnet.CodeBadRequest, "reserved"},
		{"system", register, `{"username":"system.bot","password":"a-fine-password"}`, roomnet.CodeBadRequest, "reserved"},
		{"seq beyond int64", h.URL + "/api/v1/admin/chat/delete", `{"conv":"lobby:main","seq":9223372036854775808}`, roomnet.CodeBadRequest, "seq"},
		{"seq 2^64-1", h.URL + "/api/v1/admin/chat/delete", `{"conv":"lobby:main","seq":18446744073709551615}`, roomnet.CodeBadRequest, "seq"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := alice.Token()
			if tc.url == register {
				token = ""
			} else if tc.code == roomnet.CodeBadRequest && tc.msg == "seq" {
				token = h.Admin.Token()
			}
			status, eb := raw(t, "POST", tc.url, token, tc.body)
			require.Equal(t, 400, status, eb.Error.Message)
			require.Equal(t, tc.code, eb.Error.Code, eb.Error.Message)
			require.Contains(t, eb.Error.Message, tc.msg)
		})
	}
	list, err := alice.Rooms(ctx, "")
	require.NoError(t, err)
	require.Empty(t, list)
	accounts, err := h.Admin.Users(ctx, 0)
	require.NoError(t, err)
	require.Len(t, accounts.Users, 2, "no account was registered")

	// What the rules leave alone still works, exact-case keys included.
	_, err = h.Anon().Register(ctx, "zed", "a-fine-password")
	require.NoError(t, err)
	_, err = alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "ok", MaxPlayers: 4, Password: "sesame"})
	require.NoError(t, err)
}

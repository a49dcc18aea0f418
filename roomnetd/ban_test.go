package roomnetd_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// A ban cuts the user's nodes and chat at once and keeps them out until
// it is lifted.
func TestBanCutsNodesChatAndLogin(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "ban", 4)
	host := roomnettest.Node(t, room.Join, "host")
	player := roomnettest.Node(t, join(t, bob, room.ID), "player")
	require.NoError(t, host.WaitPeer(ctx, player.IP()))
	cl, err := chatclient.Dial(ctx, chatclient.Options{URL: "ws" + strings.TrimPrefix(h.URL, "http") + "/ws", Token: bob.Token()})
	require.NoError(t, err)
	defer cl.Close()

	requireCode(t, alice.Ban(ctx, "bob"), 403, roomnet.CodeForbidden)
	requireCode(t, h.Admin.Ban(ctx, "admin"), 400, roomnet.CodeBadRequest)
	requireCode(t, h.Admin.Ban(ctx, "nobody"), 404, roomnet.CodeNotFound)
	require.NoError(t, h.Admin.Ban(ctx, "bob"))

	// The chat session ends with "revoked", and the client does not retry.
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case e := <-cl.Events():
			if e.Type == chatclient.EventDisconnected {
				require.Equal(t, chat.CloseSessionRevoked, e.Code)
				require.False(t, e.Retry)
				done = true
			}
		case <-deadline:
			t.Fatal("the banned user's chat session did not end")
		}
	}
	eventually(t, 5*time.Second, "the banned user's node is cut off", func() error {
		if st, err := player.State(ctx); err != nil || st == "Running" {
			return fmt.Errorf("state %s %v", st, err)
		}
		return nil
	})
	_, err = bob.Me(ctx)
	requireCode(t, err, 401, roomnet.CodeUnauthorized)
	_, _, err = h.Anon().Login(ctx, "bob", "password-bob")
	requireCode(t, err, 403, roomnet.CodeBanned)
	members, err := alice.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)

	require.NoError(t, h.Admin.Unban(ctx, "bob"))
	bob2, _, err := h.Anon().Login(ctx, "bob", "password-bob")
	require.NoError(t, err)
	_, err = bob2.Join(ctx, room.ID, "")
	require.NoError(t, err, "a ban is not a kick: after it is lifted the room may be joined again")
}

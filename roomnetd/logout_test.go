package roomnetd_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnettest"
)

// Logging out ends the chat sessions opened with that token, at once and
// for good (4012, no retry), and nothing it sends afterwards is stored;
// the same user's other logins keep chatting.
func TestLogoutEndsTheChatSessionsOfItsToken(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	bob := h.User("bob")
	other, _, err := h.Anon().Login(ctx, "bob", "password-bob")
	require.NoError(t, err)
	ws := "ws" + strings.TrimPrefix(h.URL, "http") + "/ws"
	ended, err := chatclient.Dial(ctx, chatclient.Options{URL: ws, Token: bob.Token()})
	require.NoError(t, err)
	defer ended.Close()
	kept, err := chatclient.Dial(ctx, chatclient.Options{URL: ws, Token: other.Token()})
	require.NoError(t, err)
	defer kept.Close()
	for _, c := range []*chatclient.Client{ended, kept} {
		require.NoError(t, c.Join(ctx, "lobby:main"))
	}

	require.NoError(t, bob.Logout(ctx))
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case e := <-ended.Events():
			if e.Type == chatclient.EventDisconnected {
				require.Equal(t, chat.CloseSessionRevoked, e.Code, "a logged-out session closes with 4012")
				require.False(t, e.Retry, "and the client does not reconnect with the dead token")
				done = true
			}
		case <-deadline:
			t.Fatal("the chat session outlived its logout")
		}
	}
	// The other login still sends, and its message is the only one stored.
	late := ended.Send("lobby:main", "after logout")
	select {
	case <-late.Done():
		_, err := late.Result()
		require.Error(t, err, "a send after logout must not be acknowledged")
	case <-time.After(3 * time.Second): // never acknowledged: as it should be
	}
	sent := kept.Send("lobby:main", "still here")
	seq, err := sent.Result()
	require.NoError(t, err)
	page, _, err := kept.HistoryAfter(ctx, "lobby:main", 0, 50)
	require.NoError(t, err)
	var bodies []string
	for _, m := range page {
		if m.Kind == chat.KindText {
			bodies = append(bodies, m.Body)
		}
	}
	require.Equal(t, []string{"still here"}, bodies, "seq %d", seq)
}

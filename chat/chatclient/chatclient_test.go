package chatclient_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) {
	roomnettest.MainWith(m, func() func() { runServerChild(); return func() {} })
}

func wsURL(h *roomnettest.Harness) string { return "ws" + strings.TrimPrefix(h.URL, "http") + "/ws" }

func dial(t *testing.T, url string, c *roomnet.Client, mod ...func(*chatclient.Options)) *chatclient.Client {
	t.Helper()
	o := chatclient.Options{URL: url, Token: c.Token()}
	for _, m := range mod {
		m(&o)
	}
	cl, err := chatclient.Dial(roomnettest.Context(t, 20*time.Second), o)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// next waits for the next event matching keep.
func next(t *testing.T, cl *chatclient.Client, keep func(chatclient.Event) bool) chatclient.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-cl.Events():
			if keep(e) {
				return e
			}
		case <-timeout:
			t.Fatal("event did not come")
		}
	}
}

func textIn(conv string) func(chatclient.Event) bool {
	return func(e chatclient.Event) bool {
		return e.Type == chatclient.EventMessage && e.Conv == conv && e.Msg.Kind == chat.KindText
	}
}

func TestRoomChatFollowsMembership(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob, carol := h.User("alice"), h.User("bob"), h.User("carol")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "chat", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = bob.Join(ctx, room.ID, "")
	require.NoError(t, err)
	conv := chat.RoomConv(room.ID)
	ac, bc, cc := dial(t, wsURL(h), alice), dial(t, wsURL(h), bob), dial(t, wsURL(h), carol)

	p := ac.Send(conv, "hello room")
	seq, err := p.Result()
	require.NoError(t, err)
	require.NotZero(t, seq)
	got := next(t, bc, textIn(conv))
	require.Equal(t, "hello room", got.Msg.Body)
	require.Equal(t, "alice", got.Msg.From)
	require.Equal(t, seq, got.Msg.Seq)

	// Outsiders can neither post nor read.
	_, err = cc.Send(conv, "let me in").Result()
	require.ErrorContains(t, err, chat.ErrForbidden)
	_, _, err = cc.History(ctx, conv, 0, 10)
	require.ErrorContains(t, err, chat.ErrForbidden)

	// A kick cuts the chat at once: removed, then refused.
	require.NoError(t, alice.Kick(ctx, room.ID, "bob"))
	ev := next(t, bc, func(e chatclient.Event) bool { return e.Type == chatclient.EventRemoved })
	require.Equal(t, conv, ev.Conv)
	require.Equal(t, "kicked", ev.Reason)
	_, err = bc.Send(conv, "still here?").Result()
	require.ErrorContains(t, err, chat.ErrForbidden)
	sys := next(t, ac, func(e chatclient.Event) bool {
		return e.Type == chatclient.EventMessage && e.Msg.Kind == chat.KindSystem && strings.Contains(e.Msg.Body, "kicked")
	})
	require.Equal(t, "bob was kicked", sys.Msg.Body)
	require.True(t, sys.Msg.Critical)

	// A new member joins live: subscribed without reconnecting.
	_, err = carol.JoinInvite(ctx, room.InviteCode)
	require.NoError(t, err)
	_, err = cc.Send(conv, "carol here").Result()
	require.NoError(t, err)
	require.Equal(t, "carol here", next(t, ac, textIn(conv)).Msg.Body)

	// Closing the room removes everyone.
	require.NoError(t, alice.CloseRoom(ctx, room.ID))
	for _, cl := range []*chatclient.Client{ac, cc} {
		ev := next(t, cl, func(e chatclient.Event) bool { return e.Type == chatclient.EventRemoved })
		require.Equal(t, "closed", ev.Reason)
	}
}

func TestOfflineSyncUnreadAndHistory(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob := h.User("alice"), h.User("bob")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "sync", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = bob.Join(ctx, room.ID, "")
	require.NoError(t, err)
	conv := chat.RoomConv(room.ID)
	ac := dial(t, wsURL(h), alice)
	bc := dial(t, wsURL(h), bob)
	_, err = ac.Send(conv, "m0").Result()
	require.NoError(t, err)
	require.Equal(t, "m0", next(t, bc, textIn(conv)).Msg.Body)
	require.NoError(t, bc.MarkRead(conv, bc.Position(conv)))
	bc.Close()

	for i := 1; i <= 30; i++ {
		_, err := ac.Send(conv, fmt.Sprintf("m%d", i)).Result()
		require.NoError(t, err)
	}
	// Bob comes back: newest messages on connect, the rest by gap fill,
	// in order, once; unread counts from the stored read position.
	bc2 := dial(t, wsURL(h), bob)
	// A fresh client starts from the newest page (20 messages).
	for i := 11; i <= 30; i++ {
		require.Equal(t, fmt.Sprintf("m%d", i), next(t, bc2, textIn(conv)).Msg.Body)
	}
	require.EqualValues(t, 30, bc2.Unread()[conv])
	// Older history pages by seq cursor.
	page, more, err := bc2.History(ctx, conv, 0, 5)
	require.NoError(t, err)
	require.True(t, more)
	require.Len(t, page, 5)
	require.Equal(t, "m30", page[4].Body)
	older, _, err := bc2.History(ctx, conv, page[0].Seq, 5)
	require.NoError(t, err)
	require.Equal(t, page[0].Seq-1, older[4].Seq)
	require.NoError(t, bc2.MarkRead(conv, page[4].Seq))
	require.EqualValues(t, 0, bc2.Unread()[conv])
}

func TestDirectMessagesAndReceipts(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob := h.User("alice"), h.User("bob")
	ac, bc := dial(t, wsURL(h), alice), dial(t, wsURL(h), bob)
	conv, err := ac.OpenDM(ctx, "bob")
	require.NoError(t, err)
	seq, err := ac.Send(conv, "psst").Result()
	require.NoError(t, err)
	got := next(t, bc, textIn(conv))
	require.Equal(t, "psst", got.Msg.Body)
	r := next(t, ac, func(e chatclient.Event) bool { return e.Type == chatclient.EventReceipt })
	require.Equal(t, "bob", r.By)
	require.Equal(t, seq, r.Seq)
	_, err = ac.OpenDM(ctx, "nobody")
	require.ErrorContains(t, err, chat.ErrNotFound)
	// A third user cannot read or write the pair's conversation.
	cc := dial(t, wsURL(h), h.User("carol"))
	_, err = cc.Send(conv, "hi").Result()
	require.ErrorContains(t, err, chat.ErrForbidden)
}

// raw is a bare protocol client for bad input.
type raw struct {
	t  *testing.T
	ws *websocket.Conn
}

func rawDial(t *testing.T, h *roomnettest.Harness, token string) *raw {
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(h), hdr)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	return &raw{t: t, ws: ws}
}

func (r *raw) send(s string) {
	require.NoError(r.t, r.ws.WriteMessage(websocket.TextMessage, []byte(s)))
}

func (r *raw) until(typ string) chat.Frame {
	r.t.Helper()
	r.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := r.ws.ReadMessage()
		require.NoError(r.t, err)
		f, err := chat.Decode(b)
		require.NoError(r.t, err)
		if f.Type == typ {
			return f
		}
	}
}

func TestBadFramesGetErrorsAndStoreNothing(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice := h.User("alice")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "raw", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	conv := chat.RoomConv(room.ID)
	r := rawDial(t, h, alice.Token())
	r.until(chat.TypeHello)
	for _, tc := range []struct{ frame, code string }{
		{`not json`, chat.ErrBadFrame},
		{`{"v":1,"type":"teleport"}`, chat.ErrBadFrame},
		{`{"v":1,"type":"send","conv":"room:x","client_msg_id":"a","body":"x","extra":1}`, chat.ErrBadFrame},
		{`{"v":1,"type":"send","conv":"room:someoneelse","client_msg_id":"a","body":"x"}`, chat.ErrForbidden},
		{`{"v":1,"type":"send","conv":"` + conv + `","client_msg_id":"","body":"x"}`, chat.ErrInvalid},
		{`{"v":1,"type":"send","conv":"` + conv + `","client_msg_id":"a","body":""}`, chat.ErrInvalid},
		{`{"v":1,"type":"send","conv":"` + conv + `","client_msg_id":"a","body":"` + strings.Repeat("x", 5000) + `"}`, chat.ErrTooLarge},
		{`{"v":1,"type":"join","conv":"room:abc"}`, chat.ErrForbidden},
		{`{"v":1,"type":"join","conv":"dm:1:2"}`, chat.ErrInvalid},
		{`{"v":1,"type":"send","conv":"` + conv + `","client_msg_id":"f","body":"x","from":"admin"}`, chat.ErrBadFrame},
		{`{"v":1,"type":"history","conv":"lobby:nothere"}`, chat.ErrForbidden},
	} {
		r.send(tc.frame)
		f := r.until(chat.TypeError)
		require.Equal(t, tc.code, f.Error.Code, tc.frame)
	}
	// A forged sender is ignored: the connection's user is the sender, and
	// a retried client_msg_id stores nothing twice.
	forged := `{"v":1,"type":"send","conv":"` + conv + `","client_msg_id":"dup-1","body":"hi","msg":{"conv":"` + conv + `","seq":99,"kind":"system","from":"admin","ts":1}}`
	r.send(forged)
	first := r.until(chat.TypeSent)
	r.send(forged)
	second := r.until(chat.TypeSent)
	require.Equal(t, first.Seq, second.Seq)
	r.send(`{"v":1,"type":"history","ref":"h","conv":"` + conv + `","limit":50}`)
	page := r.until(chat.TypePage)
	var texts []chat.Message
	for _, m := range page.Messages {
		if m.Kind == chat.KindText {
			texts = append(texts, m)
		}
	}
	require.Len(t, texts, 1, "one message stored, whatever the retries and bad frames")
	require.Equal(t, "alice", texts[0].From)

	// The connection stayed usable; an oversized frame closes it.
	r.send(`{"v":1,"type":"ping","ts":1}`)
	r.until(chat.TypePong)
	r.send(`{"v":1,"type":"send","body":"` + strings.Repeat("x", chat.MaxFrameBytes) + `"}`)
	r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := r.ws.ReadMessage(); err != nil {
			require.True(t, websocket.IsCloseError(err, websocket.CloseMessageTooBig), err.Error())
			break
		}
	}

	// No token, a bad token, a wrong version: refused with close codes.
	resp, err := http.Get(h.URL + "/ws")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 400, resp.StatusCode, "not a websocket upgrade")
	_, resp, err = websocket.DefaultDialer.Dial(wsURL(h), http.Header{"Authorization": {"Bearer nope"}})
	require.Error(t, err)
	require.Equal(t, 401, resp.StatusCode)
	for _, tc := range []struct {
		first string
		code  int
	}{
		{`{"v":1,"type":"auth","token":"forged"}`, chat.CloseUnauthorized},
		{`{"v":1,"type":"ping"}`, chat.CloseUnauthorized},
		{`{"v":7,"type":"auth","token":"` + alice.Token() + `"}`, chat.CloseBadVersion},
	} {
		r := rawDial(t, h, "")
		r.send(tc.first)
		r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := r.ws.ReadMessage()
		require.True(t, websocket.IsCloseError(err, tc.code), "%s: %v", tc.first, err)
		require.False(t, chat.Retry(tc.code))
	}
	// Auth by first frame works.
	r2 := rawDial(t, h, "")
	r2.send(`{"v":1,"type":"auth","token":"` + alice.Token() + `"}`)
	require.Equal(t, "alice", r2.until(chat.TypeHello).Hello.User)
}

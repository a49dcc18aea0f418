package web_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

const lobby = "lobby:main"

func wsURL(h *roomnettest.Harness) string { return "ws" + strings.TrimPrefix(h.URL, "http") + "/ws" }

// chatter is a Go SDK chat client in the lobby.
func chatter(t *testing.T, h *roomnettest.Harness, c *roomnet.Client) *chatclient.Client {
	t.Helper()
	ctx := roomnettest.Context(t, 30*time.Second)
	cc, err := chatclient.Dial(ctx, chatclient.Options{URL: wsURL(h), Token: c.Token()})
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	require.NoError(t, cc.Join(ctx, lobby))
	return cc
}

func sendWait(t *testing.T, cc *chatclient.Client, conv, body string) uint64 {
	t.Helper()
	p := cc.Send(conv, body)
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("send %q not acknowledged", body)
	}
	seq, err := p.Result()
	require.NoError(t, err)
	return seq
}

// The admin signs in, sees a room appear live when a player creates it,
// opens it, kicks a member and sees the member disappear; the kick is
// real (the player cannot rejoin) and audited.
func TestAdminSeesRoomsLiveAndKicks(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Web.FiguresInterval = 200 * time.Millisecond })
	ctx := roomnettest.Context(t, 120*time.Second)
	tab := profile(t, b)
	run(t, tab, "admin sign-in",
		chromedp.Navigate(h.URL+"/admin"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), h.Config.Auth.AdminUsername),
		chromedp.SendKeys(chromedp.CSS("#password"), roomnettest.AdminPassword),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#figures .figure")),
		waitJS(`document.querySelector('#live').textContent === 'live'`),
	)
	shot(t, tab, "1-dashboard")
	run(t, tab, "rooms tab", chromedp.Click(chromedp.CSS(`a[data-tab="rooms"]`)), chromedp.WaitVisible(chromedp.CSS("#tab-rooms")))

	alice, bob := h.User("alice"), h.User("bob")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "Friday LAN", Game: "minecraft", MaxPlayers: 8, Public: false})
	require.NoError(t, err)
	_, err = bob.JoinInvite(ctx, room.InviteCode)
	require.NoError(t, err)

	// No reload: the event stream brings the new room (a private one).
	run(t, tab, "room appears", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q]`, room.ID))))
	run(t, tab, "open room",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q]`, room.ID))),
		chromedp.WaitVisible(chromedp.CSS(`#members tr[data-member="bob"] button.kick`)),
		chromedp.WaitVisible(chromedp.CSS(`#members tr[data-member="alice"]`)),
	)
	shot(t, tab, "2-room-detail")
	run(t, tab, "kick bob",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		// Clicked from the page itself: the members table is redrawn on
		// every membership event, and a redraw between finding the
		// button and a synthetic click loses the button's node.
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#members tr[data-member="bob"] button.kick').click()`),
		waitJS(`document.querySelector('#members tr[data-member="bob"]') === null && document.querySelector('#members tr[data-member="alice"]') !== null`),
	)
	shot(t, tab, "3-after-kick")

	members, err := alice.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)
	require.Equal(t, "alice", members[0].Username)
	_, err = bob.JoinInvite(ctx, room.InviteCode)
	roomnettest.RequireCode(t, err, 403, roomnet.CodeKicked)

	audit, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	require.NotEmpty(t, audit.Entries)
	require.Equal(t, "kick", audit.Entries[0].Action)
	require.Equal(t, room.ID, audit.Entries[0].Target)
	require.Equal(t, "bob", audit.Entries[0].Detail)

	// The dashboard counts the room and draws its figures over time.
	run(t, tab, "dashboard charts",
		chromedp.Click(chromedp.CSS(`a[data-tab="dashboard"]`)),
		waitJS(`document.querySelector('#figures [data-figure="rooms_open"] .value').textContent === '1' &&
			document.querySelectorAll('#figures svg polyline').length === 6`),
	)
	shot(t, tab, "3b-dashboard")

	// The audit tab shows it too.
	run(t, tab, "audit tab",
		chromedp.Click(chromedp.CSS(`a[data-tab="audit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit tr[data-action="kick"]`)),
		// named by the room, not only its id
		waitJS(fmt.Sprintf(`document.querySelector('#audit tr[data-action="kick"] td.target').textContent === %q`, "Friday LAN ("+room.ID+")")),
	)
	shot(t, tab, "4-audit")
}

// Two people chat in the lobby from two browsers: each sees every message
// once, in seq order; a moderator's delete removes a message from both
// pages; a muted player's message is refused, not lost silently.
func TestLobbyChatInTwoBrowsers(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	h.User("carol")
	h.User("dave")
	carol, dave := profile(t, b), profile(t, b)
	signInLobby(t, carol, h.URL, "carol", "password-carol")
	signInLobby(t, dave, h.URL, "dave", "password-dave")

	var want []string
	for i := range 5 {
		c, d := fmt.Sprintf("carol %d", i), fmt.Sprintf("dave %d", i)
		say(t, carol, c)
		say(t, dave, d)
		want = append(want, c, d)
	}
	done := `document.querySelectorAll('ol.messages[data-conv="lobby:main"] li.msg').length === 10 && document.querySelectorAll('li.pending').length === 0`
	run(t, carol, "carol sees all", waitJS(done))
	run(t, dave, "dave sees all", waitJS(done))
	shot(t, carol, "1-carol")
	shot(t, dave, "1-dave")
	gotC, gotD := lobbyMessages(t, carol, lobby), lobbyMessages(t, dave, lobby)
	requireOnceInOrder(t, gotC, want)
	requireOnceInOrder(t, gotD, want)
	require.Equal(t, bodiesIn(gotC), bodiesIn(gotD), "both pages show the same seqs")
	// Each sender's own messages keep their order.
	for _, who := range []string{"carol", "dave"} {
		last := -1
		for _, m := range gotC {
			if strings.HasPrefix(m.Body, who) {
				var n int
				fmt.Sscanf(m.Body, who+" %d", &n)
				require.Greater(t, n, last, "%s's messages in the order sent", who)
				last = n
			}
		}
	}

	// The session cookie is invisible to script.
	cookies := eval[string](t, carol, `document.cookie`)
	require.NotContains(t, cookies, "roomnet_session")

	// A moderator deletes dave's first message: both pages drop it.
	target := gotC[1]
	require.Equal(t, "dave 0", target.Body)
	require.NoError(t, h.Admin.DeleteMessage(ctx, lobby, uint64(target.Seq)))
	gone := fmt.Sprintf(`document.querySelector('ol.messages[data-conv="lobby:main"] li.msg[data-seq="%d"]') === null`, target.Seq)
	run(t, carol, "deleted on carol's page", waitJS(gone))
	run(t, dave, "deleted on dave's page", waitJS(gone))

	// Muted, dave's next message is refused and says so.
	_, err := h.Admin.Mute(ctx, "dave", time.Hour, "spam")
	require.NoError(t, err)
	say(t, dave, "can anyone hear me")
	run(t, dave, "refused while muted", waitJS(`[...document.querySelectorAll('li.failed')].some(li => li.textContent.includes('muted'))`))
	shot(t, dave, "2-muted")
}

// A player's page survives a server restart: what it sent while the
// server was down is delivered once, and what others sent is caught up.
func TestLobbyPageSurvivesRestart(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	h.User("erin")
	frank := h.User("frank")
	page := profile(t, b)
	signInLobby(t, page, h.URL, "erin", "password-erin")
	say(t, page, "before the restart")
	run(t, page, "first message acknowledged", waitJS(`document.querySelectorAll('li.msg').length === 1 && document.querySelectorAll('li.pending').length === 0`))

	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		h.Restart()
	}()
	allowConsole(page, "WebSocket") // refused while the server is down
	run(t, page, "page notices", waitJS(`document.querySelector('#chat-status').textContent !== 'online'`))
	say(t, page, "while the server is down")
	run(t, page, "queued while down", waitJS(`document.querySelectorAll('li.pending').length === 1`))
	shot(t, page, "1-offline")
	select {
	case <-restarted:
	case <-time.After(90 * time.Second):
		t.Fatal("restart did not finish")
	}

	// Someone else talks as soon as the server is back.
	cc := chatter(t, h, frank)
	for i := range 3 {
		sendWait(t, cc, lobby, fmt.Sprintf("frank %d", i))
	}
	run(t, page, "caught up", waitJS(`document.querySelector('#chat-status').textContent === 'online' &&
		document.querySelectorAll('ol.messages[data-conv="lobby:main"] li.msg').length === 5 && document.querySelectorAll('li.pending').length === 0`))
	shot(t, page, "2-caught-up")
	requireOnceInOrder(t, lobbyMessages(t, page, lobby),
		[]string{"before the restart", "while the server is down", "frank 0", "frank 1", "frank 2"})
}

// A lobby in storm mode reaches the browser as notifies and compressed
// pulled pages: the page still shows every message once, in order.
func TestLobbyPageFollowsAStorm(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Chat.StormEnter, s.Config.Chat.StormExit = 20, 10
		s.Config.Chat.SendPerSec, s.Config.Chat.FramesPerSec = 1000, 1000
	})
	h.User("vera")
	page := profile(t, b)
	signInLobby(t, page, h.URL, "vera", "password-vera")
	cc := chatter(t, h, h.User("walt"))
	const n = 300
	var want []string
	pend := make([]*chatclient.Pending, 0, n)
	for i := range n {
		body := fmt.Sprintf("storm message %03d with some padding so that pages compress", i)
		want = append(want, body)
		pend = append(pend, cc.Send(lobby, body))
	}
	for _, p := range pend {
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("storm send not acknowledged")
		}
		_, err := p.Result()
		require.NoError(t, err)
	}
	run(t, page, "all shown", waitJS(fmt.Sprintf(`document.querySelectorAll('ol.messages[data-conv="lobby:main"] li.msg').length === %d`, n)))
	shot(t, page, "storm")
	requireOnceInOrder(t, lobbyMessages(t, page, lobby), want)
	stats := eval[map[string]int](t, page, `window.roomnetChat.stats`)
	require.Positive(t, stats["notifies"], "the storm was announced with notifies: %v", stats)
	require.Positive(t, stats["pulls"], "and pulled: %v", stats)
	require.Positive(t, stats["binaryPages"], "in compressed pages: %v", stats)
}

// A player finds a public room with the filters and clicks "Join room":
// the API makes them a member and the page hands over to roomnet with
// the room's link and the copyable command.
func TestLobbyJoinRoomHandsOverToRoomnet(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	host := h.User("xena")
	h.User("yuri")
	room, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: "Warcraft night", Game: "warcraft3", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = host.CreateRoom(ctx, roomnet.CreateRoom{Name: "Minecraft build", Game: "minecraft", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	page := profile(t, b)
	signInLobby(t, page, h.URL, "yuri", "password-yuri")
	run(t, page, "both rooms listed", waitJS(`document.querySelectorAll('#rooms tbody tr').length === 2`))
	run(t, page, "filter by game",
		chromedp.SetValue(chromedp.CSS("#filter-game"), "warcraft3"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#filter-game').dispatchEvent(new Event('input'))`),
		waitJS(fmt.Sprintf(`document.querySelectorAll('#rooms tbody tr').length === 1 && document.querySelector('#rooms tbody tr').dataset.room === %q`, room.ID)),
	)
	run(t, page, "join",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q] button.join`, room.ID))),
		chromedp.WaitVisible(chromedp.CSS("#handover")),
	)
	shot(t, page, "handover")
	cmd := eval[string](t, page, `document.querySelector('#handover-command').textContent`)
	link := eval[string](t, page, `document.querySelector('#handover-link').getAttribute('href')`)
	require.Equal(t, "roomnet join "+room.InviteCode, cmd)
	require.Equal(t, "roomnet://join/"+room.InviteCode, link)
	members, err := host.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 2, "the page joined through the API")
	// The room's chat is open to the new member.
	run(t, page, "room chat tab", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.tabs button[data-conv="room:%s"]`, room.ID))))
}

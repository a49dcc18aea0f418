package web_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// The widths every page is judged at: a laptop and a phone.
var widths = []struct {
	name string
	w, h int64
}{{"desktop", 1366, 900}, {"phone", 390, 844}}

// atWidth sets the tab's viewport.
func atWidth(t *testing.T, ctx context.Context, w, h int64) {
	t.Helper()
	run(t, ctx, fmt.Sprintf("viewport %dx%d", w, h), chromedp.EmulateViewport(w, h))
}

// requireFits checks that nothing widens the page past the window: no
// horizontal scrolling. It names the elements that stick out.
func requireFits(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	got := eval[struct {
		Scroll int      `json:"scroll"`
		Inner  int      `json:"inner"`
		Wide   []string `json:"wide"`
	}](t, ctx, `(() => {
	  const inner = window.innerWidth;
	  const scrolls = (e) => { for (let p = e.parentElement; p; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return true; return false; };
	  const wide = [...document.querySelectorAll('body *')].filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > inner + 1 && !scrolls(e))
	    .slice(0, 8).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') + ' right=' + Math.round(e.getBoundingClientRect().right));
	  return { scroll: document.documentElement.scrollWidth, inner, wide };
	})()`)
	if got.Scroll > got.Inner {
		shot(t, ctx, "overflow-"+what)
		t.Errorf("%s: the page is %d px wide in a %d px window; sticking out: %v", what, got.Scroll, got.Inner, got.Wide)
	}
}

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// requireAxe runs axe-core (web/testdata/axe-core, injected through the
// DevTools protocol, which the page's CSP does not govern) on the page as
// it is and fails on any serious or critical WCAG 2.1 A/AA violation.
func requireAxe(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if !eval[bool](t, ctx, `typeof window.axe === 'object'`) {
		src, err := os.ReadFile("testdata/axe-core/axe.min.js")
		require.NoError(t, err)
		eval[bool](t, ctx, string(src)+"\n;true")
	}
	vs := eval[[]axeViolation](t, ctx, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}, resultTypes: ['violations']})
	  .then((r) => r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
	    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 6).map((n) => n.target.join(' ') + ' — ' + n.failureSummary) })))`)
	if len(vs) > 0 {
		shot(t, ctx, "axe-"+what)
		var b strings.Builder
		for _, v := range vs {
			fmt.Fprintf(&b, "\n%s (%s): %s\n  %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n  "))
		}
		t.Errorf("%s: %d serious or critical accessibility violations:%s", what, len(vs), b.String())
	}
}

// judge checks a page at both widths: no horizontal overflow, no serious
// axe violation, no console error so far; it keeps a screenshot of each.
func judge(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	for _, w := range widths {
		atWidth(t, ctx, w.w, w.h)
		requireFits(t, ctx, what+"-"+w.name)
		requireAxe(t, ctx, what+"-"+w.name)
		shot(t, ctx, what+"-"+w.name)
	}
	atWidth(t, ctx, widths[0].w, widths[0].h)
	requireCleanConsole(t, ctx)
}

func signInAdmin(t testing.TB, ctx context.Context, h *roomnettest.Harness) {
	t.Helper()
	run(t, ctx, "admin sign-in",
		chromedp.Navigate(h.URL+"/admin"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), h.Config.Auth.AdminUsername),
		chromedp.SendKeys(chromedp.CSS("#password"), roomnettest.AdminPassword),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#figures .figure")),
		waitJS(`document.querySelector('#live').textContent === 'live'`),
	)
}

// longWord is one unbroken 400-character word, as a pasted URL.
var longWord = "https://example.com/" + strings.Repeat("a1b2c3d4", 48)

// The pages a visitor sees before signing in, a player's refusal at
// /admin and the page for a mistyped address: no CSP violation, no
// console error, no serious accessibility fault, no overflow on a phone.
func TestSignInForbiddenAndNotFoundPages(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	h.User("paula")
	tab := profile(t, b)
	run(t, tab, "lobby sign-in", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")))
	judge(t, tab, "lobby-signin")
	run(t, tab, "wrong password",
		chromedp.SendKeys(chromedp.CSS("#username"), "paula"),
		chromedp.SendKeys(chromedp.CSS("#password"), "not-her-password"),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#signin-error")),
	)
	require.Equal(t, "Wrong username or password.", eval[string](t, tab, `document.querySelector('#signin-error').textContent`))
	judge(t, tab, "lobby-signin-error")

	run(t, tab, "admin sign-in page", chromedp.Navigate(h.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	judge(t, tab, "admin-login")

	run(t, tab, "not found", chromedp.Navigate(h.URL+"/no/such/page"), chromedp.WaitVisible(chromedp.CSS("main .card")))
	require.Contains(t, eval[string](t, tab, `document.body.textContent`), "This page isn't here")
	require.Equal(t, h.URL+"/", eval[string](t, tab, `document.querySelector('main a').href`))
	judge(t, tab, "not-found")

	signInLobby(t, tab, h.URL, "paula", "password-paula")
	run(t, tab, "forbidden", chromedp.Navigate(h.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("main .card")))
	judge(t, tab, "admin-forbidden")
}

// The signed-in lobby with rooms, my rooms, a password room and a chat
// holding one long unbroken word: at a laptop's and a phone's width the
// page keeps its width, the room table its columns and Send its place;
// nothing breaks the CSP and axe finds nothing serious.
func TestLobbyFitsDesktopAndPhoneWithLongWords(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	quinn := h.User("quinn")
	h.User("rita")
	for i, name := range []string{"Warcraft night", "Minecraft build " + strings.Repeat("x", 40), "Locked room"} {
		_, err := quinn.CreateRoom(ctx, roomnet.CreateRoom{Name: name, Game: []string{"warcraft3", "minecraft", "cs16"}[i], MaxPlayers: 8, Public: true, Password: map[bool]string{true: "sesame-123"}[i == 2]})
		require.NoError(t, err)
	}
	cc := chatter(t, h, quinn)
	sendWait(t, cc, lobby, "hello lobby")
	sendWait(t, cc, lobby, longWord)

	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "rita", "password-rita")
	run(t, tab, "rooms and chat shown", waitJS(`document.querySelectorAll('#rooms tbody tr').length === 3 &&
		document.querySelectorAll('ol.messages[data-conv="lobby:main"] li.msg').length === 2`))
	// Rita hosts a room of her own: my rooms with host controls.
	run(t, tab, "create a room",
		chromedp.SendKeys(chromedp.CSS("#create-name"), "Rita's "+strings.Repeat("verylongname", 4)),
		chromedp.Click(chromedp.CSS("#create button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#handover")),
		waitJS(`document.querySelectorAll('#mine li[data-room] button.rotate').length === 1`),
	)
	run(t, tab, "password field", chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('#rooms button.join')].find((b) => b.getAttribute('aria-label').includes('password')).click()`),
		chromedp.WaitVisible(chromedp.CSS(`#rooms form.room-pass input[type=password]`)))
	for _, w := range widths {
		atWidth(t, tab, w.w, w.h)
		requireFits(t, tab, "lobby-"+w.name)
		send := eval[struct {
			Right, Inner float64
		}](t, tab, `({Right: document.querySelector('#chat-form button').getBoundingClientRect().right, Inner: window.innerWidth})`)
		require.LessOrEqual(t, send.Right, send.Inner, "%s: Send stays on screen", w.name)
		if w.name == "desktop" {
			// The room table keeps readable columns beside the chat.
			require.Greater(t, eval[float64](t, tab, `document.querySelector('#rooms').getBoundingClientRect().width`), 500.0)
		}
		requireAxe(t, tab, "lobby-"+w.name)
		shot(t, tab, "lobby-"+w.name)
	}
	requireCleanConsole(t, tab)
}

// The admin panel, every tab, at both widths, with a long word in the
// watched chat: no overflow, no CSP violation, nothing serious for axe.
func TestAdminFitsDesktopAndPhone(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Web.FiguresInterval = 200 * time.Millisecond })
	ctx := roomnettest.Context(t, 120*time.Second)
	sam := h.User("sam")
	room, err := sam.CreateRoom(ctx, roomnet.CreateRoom{Name: "Long " + strings.Repeat("name", 14), Game: "minecraft", MaxPlayers: 8, Public: true})
	require.NoError(t, err)
	cc := chatter(t, h, sam)
	sendWait(t, cc, lobby, longWord)
	tab := profile(t, b)
	signInAdmin(t, tab, h)
	judge(t, tab, "admin-dashboard")
	run(t, tab, "rooms", chromedp.Click(chromedp.CSS(`a[data-tab="rooms"]`)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q] button`, room.ID))),
		chromedp.WaitVisible(chromedp.CSS(`#members tr[data-member="sam"]`)))
	judge(t, tab, "admin-rooms")
	run(t, tab, "users", chromedp.Click(chromedp.CSS(`a[data-tab="users"]`)), chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="sam"]`)))
	judge(t, tab, "admin-users")
	run(t, tab, "relays", chromedp.Click(chromedp.CSS(`a[data-tab="relays"]`)), chromedp.WaitVisible(chromedp.CSS(`#relays tbody tr`)))
	judge(t, tab, "admin-relays")
	run(t, tab, "chat", chromedp.Click(chromedp.CSS(`a[data-tab="chat"]`)),
		waitJS(`document.querySelectorAll('#chat ol.messages[data-conv="lobby:main"] li.msg').length === 1`))
	judge(t, tab, "admin-chat")
	run(t, tab, "audit", chromedp.Click(chromedp.CSS(`a[data-tab="audit"]`)), chromedp.WaitVisible(chromedp.CSS(`#tab-audit`)))
	judge(t, tab, "admin-audit")
}

// After a reload the page resumes from its stored positions, so the
// server sends only what is newer: the page loads the older messages with
// history, in the lobby and in a room, and names the room's tab by the
// room's name.
func TestLobbyChatHistoryAfterReload(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	tess := h.User("tess")
	uma := h.User("uma")
	room, err := tess.CreateRoom(ctx, roomnet.CreateRoom{Name: "Quake night", Game: "quake", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = uma.Join(ctx, room.ID, "")
	require.NoError(t, err)
	conv := "room:" + room.ID
	cc := chatter(t, h, tess)
	var lobbyWant, roomWant []string
	for i := range 5 {
		lobbyWant = append(lobbyWant, fmt.Sprintf("lobby %d", i))
		sendWait(t, cc, lobby, lobbyWant[i])
	}
	for i := range 4 {
		roomWant = append(roomWant, fmt.Sprintf("room %d", i))
		sendWait(t, cc, conv, roomWant[i])
	}
	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "uma", "password-uma")
	// The room also holds system messages (who joined); count the texts.
	all := fmt.Sprintf(`document.querySelectorAll('ol.messages[data-conv="lobby:main"] li.msg').length === 5 &&
		document.querySelectorAll('ol.messages[data-conv=%q] li.msg:not([data-from=""])').length === 4`, conv)
	run(t, tab, "first visit", waitJS(all))
	run(t, tab, "positions stored", waitJS(`(() => {
		const e = Object.entries(localStorage).find(([k]) => k.startsWith('roomnet.chat.v1.'));
		return !!e && Object.keys(JSON.parse(e[1]).positions || {}).length === 2;
	})()`))
	run(t, tab, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#app")),
		waitJS(`document.querySelector('#chat-status').textContent === 'online'`), waitJS(all))
	requireOnceInOrder(t, lobbyMessages(t, tab, lobby), lobbyWant)
	requireOnceInOrder(t, texts(lobbyMessages(t, tab, conv)), roomWant)
	// New messages are announced to screen readers.
	require.Equal(t, "polite", eval[string](t, tab, fmt.Sprintf(`document.querySelector('ol.messages[data-conv=%q]').getAttribute('aria-live')`, conv)))
	run(t, tab, "room tab named", waitJS(fmt.Sprintf(`document.querySelector('.tabs button[data-conv=%q] .name').textContent === 'Quake night'`, conv)))
	// Newer messages still arrive after the loaded history, in order.
	sendWait(t, cc, conv, "room 4")
	run(t, tab, "open the room", chromedp.Click(chromedp.CSS(fmt.Sprintf(`.tabs button[data-conv=%q]`, conv))),
		waitJS(fmt.Sprintf(`document.querySelectorAll('ol.messages[data-conv=%q] li.msg:not([data-from=""])').length === 5`, conv)))
	requireOnceInOrder(t, texts(lobbyMessages(t, tab, conv)), append(roomWant, "room 4"))
	shot(t, tab, "after-reload")
	requireCleanConsole(t, tab)
}

// press clicks an element from script (see the password step of
// TestLobbyInviteCodePasswordAndMyRooms for why not with the mouse).
func press(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).click()`, sel))
}

// texts keeps the messages people wrote (not the system's).
func texts(ms []shown) []shown {
	var out []shown
	for _, m := range ms {
		if m.From != "" {
			out = append(out, m)
		}
	}
	return out
}

// Creating a room hands the host over to what hosts it (roomnet join on
// the host's machine starts hosting), and says so; the command copies on
// plain http, with feedback.
func TestLobbyHandsTheHostOverToHosting(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	vic := h.User("vic")
	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "vic", "password-vic")
	run(t, tab, "create",
		chromedp.SendKeys(chromedp.CSS("#create-name"), "Friday LAN"),
		chromedp.Click(chromedp.CSS("#create button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#handover")),
	)
	mine, err := vic.MyRooms(ctx)
	require.NoError(t, err)
	require.Len(t, mine, 1)
	require.Equal(t, "You host Friday LAN", eval[string](t, tab, `document.querySelector('#handover-title').textContent`))
	require.Contains(t, eval[string](t, tab, `document.querySelector('#handover-text').textContent`), "start hosting")
	require.Equal(t, "roomnet join "+mine[0].InviteCode, eval[string](t, tab, `document.querySelector('#handover-command').textContent`))
	require.Equal(t, "roomnet://join/"+mine[0].InviteCode, eval[string](t, tab, `document.querySelector('#handover-link').getAttribute('href')`))
	// Plain http has no async clipboard: the fallback copies and says so.
	run(t, tab, "copy without the clipboard API",
		chromedp.Evaluate[chromedp.Void](`Object.defineProperty(navigator, 'clipboard', { value: undefined, configurable: true }); Object.defineProperty(window, 'isSecureContext', { value: false, configurable: true }); undefined`),
		chromedp.Click(chromedp.CSS("#copy-command")),
		waitJS(`!document.querySelector('#copy-feedback').hidden && document.querySelector('#copy-feedback').textContent !== ''`))
	require.Contains(t, []string{"Copied.", "Could not copy: select the text and press Ctrl+C."}, eval[string](t, tab, `document.querySelector('#copy-feedback').textContent`))
	shot(t, tab, "host-handover")
	judge(t, tab, "host-handover")
}

// A page whose session ends elsewhere goes back to sign-in and says
// why: a ban (chat closes with 4012), a sign-out in another tab (the
// API answers 401), and the admin panel's event stream.
func TestEndedSessionReturnsToSignIn(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	h.User("wade")
	h.User("xia")

	banned := profile(t, b)
	signInLobby(t, banned, h.URL, "wade", "password-wade")
	require.NoError(t, h.Admin.Ban(ctx, "wade"))
	run(t, banned, "banned: back to sign-in", chromedp.WaitVisible(chromedp.CSS("#signin-reason")))
	require.Contains(t, eval[string](t, banned, `document.querySelector('#signin-reason').textContent`), "session ended")
	shot(t, banned, "1-banned")
	allowConsole(banned, "WebSocket")
	run(t, banned, "banned: sign-in refused in words",
		chromedp.SendKeys(chromedp.CSS("#username"), "wade"),
		chromedp.SendKeys(chromedp.CSS("#password"), "password-wade"),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	require.Equal(t, "This account is banned.", eval[string](t, banned, `document.querySelector('#signin-error').textContent`))

	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "xia", "password-xia")
	other, cancel := chromedp.NewContext(tab) // another tab, same cookies
	defer cancel()
	run(t, other, "sign out in another tab", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signout")),
		chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
	run(t, tab, "signed out elsewhere: back to sign-in", chromedp.WaitVisible(chromedp.CSS("#signin-reason")))
	shot(t, tab, "2-signed-out-elsewhere")
	allowConsole(tab, "WebSocket")

	adm := profile(t, b)
	signInAdmin(t, adm, h)
	admOther, cancel2 := chromedp.NewContext(adm)
	defer cancel2()
	run(t, admOther, "admin signs out in another tab", chromedp.Navigate(h.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("#signout")),
		chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	run(t, adm, "admin panel: back to sign-in", chromedp.WaitVisible(chromedp.CSS("#signin-reason")))
	require.Contains(t, eval[string](t, adm, `document.querySelector('#signin-reason').textContent`), "session ended")
	shot(t, adm, "3-admin-signed-out")
	allowConsole(adm, "WebSocket")
	allowConsole(adm, "EventSource")
}

// A player joins a private room with its invite code, a password room
// with the password typed next to it (no prompt), sees rooms they are in
// as Open/Leave, reads errors in words, and leaves.
func TestLobbyInviteCodePasswordAndMyRooms(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	host := h.User("yara")
	h.User("zack")
	private, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: "Secret base", Game: "minecraft", MaxPlayers: 4, Public: false})
	require.NoError(t, err)
	locked, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: "Locked", Game: "cs16", MaxPlayers: 4, Public: true, Password: "sesame-123"})
	require.NoError(t, err)
	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "zack", "password-zack")

	run(t, tab, "bad invite code", chromedp.SendKeys(chromedp.CSS("#invite-code"), "ZZZZZZZZ"),
		chromedp.Click(chromedp.CSS("#invite-form button")), chromedp.WaitVisible(chromedp.CSS("#invite-error")))
	require.Contains(t, eval[string](t, tab, `document.querySelector('#invite-error').textContent`), "No room has this invite code")
	run(t, tab, "join by invite", chromedp.SetValue(chromedp.CSS("#invite-code"), strings.ToLower(private.InviteCode)),
		chromedp.Click(chromedp.CSS("#invite-form button")), chromedp.WaitVisible(chromedp.CSS("#handover")),
		waitJS(fmt.Sprintf(`document.querySelector('#mine li[data-room=%q]') !== null`, private.ID)))
	require.Equal(t, "You're in Secret base", eval[string](t, tab, `document.querySelector('#handover-title').textContent`))
	require.True(t, eval[bool](t, tab, `document.querySelector('#invite-error').hidden`))

	row := fmt.Sprintf(`#rooms tr[data-room=%q]`, locked.ID)
	// The password is not typed: once a form with a password field was
	// submitted (the sign-in), headless Chromium may route keys away from
	// the page (a CI run under load lost the typed password that way). It
	// is set by script and submitted with a real click.
	run(t, tab, "password asked in place",
		press(row+" button.join"),
		chromedp.WaitVisible(chromedp.CSS(row+" form.room-pass input[type=password]")),
		waitJS(fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, row+" form.room-pass input")),
		chromedp.SetValue(chromedp.CSS(row+" form.room-pass input"), "wrong-password"),
		chromedp.Click(chromedp.CSS(row+" form.room-pass button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#rooms-error")))
	require.Equal(t, "Wrong room password.", eval[string](t, tab, `document.querySelector('#rooms-error').textContent`))
	shot(t, tab, "1-wrong-password")
	// The browser launches roomnet:// only within a few seconds of a user
	// gesture; on a loaded machine the scripted submit below may come
	// later, and the page then relies on its link and command.
	allowConsole(tab, "because a user gesture is required")
	run(t, tab, "right password",
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const f = document.querySelector(%q); f.querySelector('input').value = 'sesame-123'; f.requestSubmit(); })()`, row+" form.room-pass")),
		waitJS(fmt.Sprintf(`document.querySelector('#handover-title').textContent === 'You\'re in Locked' && document.querySelector(%q) !== null`, row+" button.leave")))
	require.Equal(t, "Open", eval[string](t, tab, fmt.Sprintf(`document.querySelector(%q).textContent`, row+" button.open")))
	require.Equal(t, "Leave Locked", eval[string](t, tab, fmt.Sprintf(`document.querySelector(%q).getAttribute('aria-label')`, row+" button.leave")))
	members, err := host.Members(ctx, locked.ID)
	require.NoError(t, err)
	require.Len(t, members, 2)
	shot(t, tab, "2-my-rooms")
	judge(t, tab, "my-rooms")

	run(t, tab, "leave", press(fmt.Sprintf(`#mine li[data-room=%q] button.leave`, locked.ID)),
		waitJS(fmt.Sprintf(`document.querySelector('#mine li[data-room=%q]') === null && document.querySelector(%q) !== null`, locked.ID, row+" button.join")))
	members, err = host.Members(ctx, locked.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)
	requireCleanConsole(t, tab)
}

// The host runs their room from the page: kick (after a confirmation), a
// new invite code, close.
func TestLobbyHostControls(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	ada := h.User("ada")
	ben := h.User("ben")
	room, err := ada.CreateRoom(ctx, roomnet.CreateRoom{Name: "Ada's room", Game: "minecraft", MaxPlayers: 4, Public: false})
	require.NoError(t, err)
	_, err = ben.JoinInvite(ctx, room.InviteCode)
	require.NoError(t, err)
	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "ada", "password-ada")
	item := fmt.Sprintf(`#mine li[data-room=%q]`, room.ID)
	run(t, tab, "my room with its member", chromedp.WaitVisible(chromedp.CSS(item+` li[data-member="ben"] button.kick`)))
	shot(t, tab, "1-host")
	run(t, tab, "kick refused at the confirmation",
		chromedp.Evaluate[chromedp.Void](`window.confirm = (m) => { window.asked = m; return false; }`),
		chromedp.Click(chromedp.CSS(item+` li[data-member="ben"] button.kick`)),
		waitJS(`(window.asked || '').includes('Kick ben')`))
	members, err := ada.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 2, "no kick without confirming")
	run(t, tab, "kick confirmed",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(item+` li[data-member="ben"] button.kick`)),
		waitJS(fmt.Sprintf(`document.querySelector(%q) === null`, item+` li[data-member="ben"]`)))
	members, err = ada.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)

	run(t, tab, "new invite", chromedp.Click(chromedp.CSS(item+" button.rotate")),
		waitJS(fmt.Sprintf(`document.querySelector(%q).textContent !== %q`, item+" .code", room.InviteCode)))
	fresh, err := ada.Room(ctx, room.ID)
	require.NoError(t, err)
	require.NotEqual(t, room.InviteCode, fresh.InviteCode)
	require.Equal(t, fresh.InviteCode, eval[string](t, tab, fmt.Sprintf(`document.querySelector(%q).textContent`, item+" .code")))
	require.Contains(t, eval[string](t, tab, `document.querySelector('#mine-status').textContent`), fresh.InviteCode)

	run(t, tab, "close", chromedp.Click(chromedp.CSS(item+" button.close")), waitJS(fmt.Sprintf(`document.querySelector(%q) === null`, item)))
	mine, err := ada.MyRooms(ctx)
	require.NoError(t, err)
	require.Empty(t, mine)
	shot(t, tab, "2-closed")
	requireCleanConsole(t, tab)
}

// The 5-second refresh updates the room list in place: the button a
// player focused stays focused; the title counts unread messages.
func TestLobbyRefreshKeepsFocusAndTitleCountsUnread(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	cleo := h.User("cleo")
	h.User("dina")
	room, err := cleo.CreateRoom(ctx, roomnet.CreateRoom{Name: "Open room", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	tab := profile(t, b)
	signInLobby(t, tab, h.URL, "dina", "password-dina")
	btn := fmt.Sprintf(`#rooms tr[data-room=%q] button.join`, room.ID)
	run(t, tab, "focus join", chromedp.WaitVisible(chromedp.CSS(btn)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.focused = document.querySelector(%q); window.focused.focus(); window.rendersAtFocus = window.roomnetLobby.renders`, btn)),
		waitJS(`window.roomnetLobby.renders >= window.rendersAtFocus + 2`))
	require.True(t, eval[bool](t, tab, `document.activeElement === window.focused && document.contains(window.focused)`), "focus kept across refreshes")

	// Dina joins; messages in the room while the lobby tab is open count
	// in the title.
	run(t, tab, "join", chromedp.Click(chromedp.CSS(btn)), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.tabs button[data-conv="room:%s"]`, room.ID))),
		chromedp.Click(chromedp.CSS(`.tabs button[data-conv="lobby:main"]`)))
	cc := chatter(t, h, cleo)
	sendWait(t, cc, "room:"+room.ID, "ready?")
	sendWait(t, cc, "room:"+room.ID, "go!")
	// (The count includes the room's system messages, as the badge does.)
	run(t, tab, "title counts", waitJS(fmt.Sprintf(`(() => {
		const n = Number(document.querySelector('.tabs button[data-conv="room:%s"]').dataset.unread || 0);
		return n >= 2 && document.title === '(' + n + ') roomnet lobby';
	})()`, room.ID)))
	run(t, tab, "read", chromedp.Click(chromedp.CSS(fmt.Sprintf(`.tabs button[data-conv="room:%s"]`, room.ID))), waitJS(`document.title === 'roomnet lobby'`))
	requireCleanConsole(t, tab)
}

// The admin panel's small fixes: rooms open from the keyboard, kick asks
// first, roles change on Save, no ban or mute on yourself, paths name the
// address, a closed room shows neither members nor invite, the error
// banner clears, Watch reads a room and says why it cannot.
func TestAdminSmallFixes(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 120*time.Second)
	eve, fay := h.User("eve"), h.User("fay")
	room, err := eve.CreateRoom(ctx, roomnet.CreateRoom{Name: "Paths", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = fay.Join(ctx, room.ID, "")
	require.NoError(t, err)
	require.NoError(t, eve.ReportPaths(ctx, room.ID, []roomnet.Link{{Peer: "fay", IP: "100.64.0.7", Direct: true}, {Peer: "fay", IP: "100.64.0.9", Relay: "lan"}}))
	tab := profile(t, b)
	signInAdmin(t, tab, h)

	run(t, tab, "room from the keyboard", chromedp.Click(chromedp.CSS(`a[data-tab="rooms"]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q] button`, room.ID))),
		chromedp.Focus(chromedp.CSS(fmt.Sprintf(`#rooms tr[data-room=%q] button`, room.ID))),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS(`#members tr[data-member="fay"] button.kick`)))
	paths := eval[[]string](t, tab, `[...document.querySelectorAll('#members tr[data-member="eve"] .path')].map((p) => p.textContent)`)
	require.Len(t, paths, 2)
	require.Contains(t, paths[0], "fay (100.64.0.7)")
	require.Contains(t, paths[1], "fay (100.64.0.9)")
	run(t, tab, "kick refused at the confirmation",
		chromedp.Evaluate[chromedp.Void](`window.confirm = (m) => { window.asked = m; return false; }`),
		chromedp.Click(chromedp.CSS(`#members tr[data-member="fay"] button.kick`)),
		waitJS(`(window.asked || '').includes('Kick fay')`))
	members, err := eve.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 2, "no kick without confirming")

	require.NoError(t, eve.CloseRoom(ctx, room.ID))
	run(t, tab, "closed room", chromedp.SetValue(chromedp.CSS("#room-state"), "closed"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#room-state').dispatchEvent(new Event('input'))`),
		// The list is redrawn: wait for the closed row, then open it.
		waitJS(fmt.Sprintf(`document.querySelector(%q) !== null`, fmt.Sprintf(`#rooms tr[data-room=%q] .pill.bad`, room.ID))),
		press(fmt.Sprintf(`#rooms tr[data-room=%q] button`, room.ID)),
		chromedp.WaitVisible(chromedp.CSS("#room-closed")))
	require.True(t, eval[bool](t, tab, `document.querySelector('#members').hidden && document.querySelector('#room-invite').hidden && document.querySelector('#room-close').hidden`))
	shot(t, tab, "1-closed-room")

	admin := h.Config.Auth.AdminUsername
	run(t, tab, "users", chromedp.Click(chromedp.CSS(`a[data-tab="users"]`)), chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="fay"] select`)))
	require.Zero(t, eval[int](t, tab, fmt.Sprintf(`document.querySelectorAll('#users tr[data-user=%q] button, #users tr[data-user=%q] select').length`, admin, admin)), "nothing to do to yourself")
	run(t, tab, "pick a role", chromedp.SetValue(chromedp.CSS(`#users tr[data-user="fay"] select`), "admin"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#users tr[data-user="fay"] select').dispatchEvent(new Event('change'))`),
		chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="fay"] button.save-role`)))
	us, err := h.Admin.SearchUsers(ctx, "fay")
	require.NoError(t, err)
	require.Equal(t, "player", us.Users[0].Role, "picking is not saving")
	run(t, tab, "save the role", chromedp.Click(chromedp.CSS(`#users tr[data-user="fay"] button.save-role`)),
		waitJS(`document.querySelector('#users tr[data-user="fay"] select').value === 'admin' && document.querySelector('#users tr[data-user="fay"] button.save-role').hidden`))
	us, err = h.Admin.SearchUsers(ctx, "fay")
	require.NoError(t, err)
	require.Equal(t, "admin", us.Users[0].Role)

	run(t, tab, "an error", chromedp.Click(chromedp.CSS(`a[data-tab="chat"]`)),
		chromedp.SendKeys(chromedp.CSS("#mute-user"), "nobody-here"),
		chromedp.Click(chromedp.CSS("#mute button")), chromedp.WaitVisible(chromedp.CSS("#error-banner")))
	require.Equal(t, "There is no user nobody-here.", eval[string](t, tab, `document.querySelector('#error').textContent`))
	run(t, tab, "cleared by the next action that works", chromedp.SetValue(chromedp.CSS("#mute-user"), "eve"),
		chromedp.Click(chromedp.CSS("#mute button")), waitJS(`document.querySelector('#error-banner').hidden && document.querySelector('#mod-result').textContent.startsWith('eve muted')`))

	run(t, tab, "watch a room: its history, read over REST", chromedp.SetValue(chromedp.CSS("#watch-conv"), "room:"+room.ID), chromedp.Click(chromedp.CSS("#watch")),
		waitJS(`document.querySelector('#watch-result').textContent.startsWith('Reading "Paths"') && !document.querySelector('#room-log').hidden`))
	run(t, tab, "watch what is not a conversation", chromedp.SetValue(chromedp.CSS("#watch-conv"), "room:no-such-room"), chromedp.Click(chromedp.CSS("#watch")),
		waitJS(`document.querySelector('#watch-result').textContent.startsWith('Cannot read room:no-such-room')`))
	shot(t, tab, "2-watch-room")
	requireCleanConsole(t, tab)
}

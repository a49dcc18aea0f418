package web_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// signInPanel signs a moderator or admin in at /admin and waits for the
// live event stream.
func signInPanel(t testing.TB, ctx context.Context, h *roomnettest.Harness, user, password, ready string) {
	t.Helper()
	run(t, ctx, "panel sign-in "+user,
		chromedp.Navigate(h.URL+"/admin"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS(ready)),
		waitJS(`document.querySelector('#live').textContent === 'live'`),
	)
}

// A moderator's panel shows only their tools: no dashboard, relays or
// roles; Ban and Mute on players only. A ban from the panel asks how
// long and why in a dialog, and the banned player's lobby says both.
func TestModeratorPanelAndTemporaryBan(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 180*time.Second)
	h.User("mona")
	h.User("otto")
	pia := h.User("pia")
	for _, name := range []string{"mona", "otto"} {
		_, err := h.Admin.SetRole(ctx, name, "moderator")
		require.NoError(t, err)
	}
	_, err := pia.CreateRoom(ctx, roomnet.CreateRoom{Name: "Pia's room", MaxPlayers: 4, Public: true})
	require.NoError(t, err)

	tab := profile(t, b)
	signInPanel(t, tab, h, "mona", "password-mona", "#rooms tbody tr")
	require.Equal(t, "moderator", eval[string](t, tab, `document.body.dataset.role`))
	require.Equal(t, []string{"rooms", "users", "chat", "audit"}, eval[[]string](t, tab, `[...document.querySelectorAll('header nav a')].map((a) => a.dataset.tab)`))
	require.True(t, eval[bool](t, tab, `!document.querySelector('#tab-dashboard') && !document.querySelector('#tab-relays')`))
	judge(t, tab, "moderator-rooms")

	admin := h.Config.Auth.AdminUsername
	run(t, tab, "users", chromedp.Click(chromedp.CSS(`a[data-tab="users"]`)), chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="pia"] button.ban`)))
	require.Zero(t, eval[int](t, tab, `document.querySelectorAll('#users select').length`), "roles are the admins'")
	for _, name := range []string{admin, "otto", "mona"} {
		require.Zero(t, eval[int](t, tab, fmt.Sprintf(`document.querySelectorAll('#users tr[data-user=%q] button').length`, name)), "no ban or mute on %s", name)
	}
	require.Equal(t, "moderator", eval[string](t, tab, `document.querySelector('#users tr[data-user="otto"] td:nth-child(2)').textContent`))
	judge(t, tab, "moderator-users")

	// Cancelling the dialog bans nobody.
	run(t, tab, "ban dialog, cancelled", chromedp.Click(chromedp.CSS(`#users tr[data-user="pia"] button.ban`)),
		waitJS(`document.querySelector('#ban-dialog').open`), chromedp.Click(chromedp.CSS("#ban-cancel")),
		waitJS(`!document.querySelector('#ban-dialog').open`))
	_, err = pia.Me(ctx)
	require.NoError(t, err, "a cancelled ban bans nothing")

	run(t, tab, "ban dialog", chromedp.Click(chromedp.CSS(`#users tr[data-user="pia"] button.ban`)),
		waitJS(`document.querySelector('#ban-dialog').open && document.activeElement === document.querySelector('#ban-reason')`),
		chromedp.SetValue(chromedp.CSS("#ban-for"), "3600"),
		chromedp.SendKeys(chromedp.CSS("#ban-reason"), "spamming the lobby"))
	require.Equal(t, "Ban pia", eval[string](t, tab, `document.querySelector('#ban-title').textContent`))
	judge(t, tab, "ban-dialog")
	start := time.Now()
	run(t, tab, "ban", chromedp.Click(chromedp.CSS("#ban-confirm")),
		waitJS(`document.querySelector('#users tr[data-user="pia"] .pill.bad') !== null && document.querySelector('#users tr[data-user="pia"] .pill.bad').textContent.startsWith('banned until')`))
	_, _, err = h.Anon().Login(ctx, "pia", "password-pia")
	roomnettest.RequireCode(t, err, 403, roomnet.CodeBanned)
	ae := err.(*roomnet.Error)
	require.Equal(t, "spamming the lobby", ae.Reason)
	require.WithinDuration(t, start.Add(time.Hour), *ae.Until, time.Minute)
	shot(t, tab, "moderator-banned")
	requireCleanConsole(t, tab)

	// The player reads the ban in words at sign-in.
	player := profile(t, b)
	run(t, player, "banned sign-in",
		chromedp.Navigate(h.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), "pia"),
		chromedp.SendKeys(chromedp.CSS("#password"), "password-pia"),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	msg := eval[string](t, player, `document.querySelector('#signin-error').textContent`)
	require.Regexp(t, `^This account is banned until .+ because spamming the lobby\.$`, msg)
	judge(t, player, "banned-signin")
}

// A player's profile, reached from the users list: their rooms now and
// before, their mute with its reason, the history of what was done about
// them (a deleted message's text included), and a purge of every message
// they wrote, asked first. A moderator is offered nothing against an
// admin, nor against themselves.
func TestProfilePageMuteAndPurge(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 180*time.Second)
	h.User("mona")
	_, err := h.Admin.SetRole(ctx, "mona", "moderator")
	require.NoError(t, err)
	pia, quinn := h.User("pia"), h.User("quinn")
	left, err := quinn.CreateRoom(ctx, roomnet.CreateRoom{Name: "Left behind", Game: "cs16", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	here, err := quinn.CreateRoom(ctx, roomnet.CreateRoom{Name: "Still here", Game: "minecraft", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	for _, r := range []roomnet.CreateRoomResponse{left, here} {
		_, err = pia.Join(ctx, r.ID, "")
		require.NoError(t, err)
	}
	require.NoError(t, pia.Leave(ctx, left.ID))
	pc := chatter(t, h, pia)
	first := sendWait(t, pc, lobby, "buy cheap gold")
	sendWait(t, pc, lobby, "gold gold gold")
	sendWait(t, pc, lobby, "last chance for gold")
	require.NoError(t, h.Admin.DeleteMessage(ctx, lobby, first))

	tab := profile(t, b)
	signInPanel(t, tab, h, "mona", "password-mona", "#rooms tbody tr")
	run(t, tab, "profile from the users list", chromedp.Click(chromedp.CSS(`a[data-tab="users"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="pia"] a.profile-link`)),
		chromedp.Click(chromedp.CSS(`#users tr[data-user="pia"] a.profile-link`)),
		waitJS(`document.querySelector('#profile-title').textContent === 'pia' && document.querySelectorAll('#profile-rooms tbody tr').length === 2`))
	require.Equal(t, "#user/pia", eval[string](t, tab, `location.hash`))
	require.True(t, eval[bool](t, tab, `document.querySelector('a[data-tab="users"]').classList.contains('active')`))
	rooms := eval[map[string]string](t, tab, `Object.fromEntries([...document.querySelectorAll('#profile-rooms tbody tr')].map((tr) => [tr.dataset.room, tr.children[2].textContent]))`)
	require.Equal(t, map[string]string{here.ID: "in it now", left.ID: "left"}, rooms)
	history := eval[[]string](t, tab, `[...document.querySelectorAll('#profile-history tbody tr')].map((tr) => tr.children[2].textContent + ' ' + tr.children[4].textContent)`)
	require.Equal(t, []string{"delete_message pia: buy cheap gold"}, history, "the deleted message's text is kept")

	run(t, tab, "mute with a reason", chromedp.SetValue(chromedp.CSS("#profile-mute-for"), "86400"),
		chromedp.SendKeys(chromedp.CSS("#profile-mute-reason"), "shouting"),
		chromedp.Click(chromedp.CSS("#profile-mute button")),
		waitJS(`document.querySelector('#profile-state').textContent.includes('because shouting') && !document.querySelector('#profile-unmute').hidden`))
	require.Contains(t, eval[string](t, tab, `document.querySelector('#profile-state').textContent`), "Muted until")
	p, err := h.Admin.Profile(ctx, "pia")
	require.NoError(t, err)
	require.Equal(t, "shouting", p.Mute.Reason)
	judge(t, tab, "profile")

	run(t, tab, "purge refused at the confirmation",
		chromedp.Evaluate[chromedp.Void](`window.confirm = (m) => { window.asked = m; return false; }`),
		chromedp.Click(chromedp.CSS("#profile-purge")),
		waitJS(`(window.asked || '').includes('pia')`))
	msgs, _, err := pc.History(ctx, lobby, 0, 10)
	require.NoError(t, err)
	require.Equal(t, 2, textCount(msgs), "no purge without confirming")
	run(t, tab, "purge",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS("#profile-purge")),
		waitJS(`document.querySelector('#profile-result').textContent === '2 messages of pia deleted.'`),
		waitJS(`document.querySelector('#profile-history tbody tr').children[2].textContent === 'purge_messages'`))
	msgs, _, err = pc.History(ctx, lobby, 0, 10)
	require.NoError(t, err)
	require.Zero(t, textCount(msgs))
	shot(t, tab, "profile-purged")

	// Nothing to do to an admin, or to yourself.
	for _, name := range []string{h.Config.Auth.AdminUsername, "mona"} {
		run(t, tab, "profile of "+name, chromedp.Navigate(h.URL+"/admin#user/"+name),
			waitJS(fmt.Sprintf(`document.querySelector('#profile-title').textContent === %q`, name)))
		require.True(t, eval[bool](t, tab, `document.querySelector('#profile-actions').hidden`), "actions on %s", name)
	}
	judge(t, tab, "profile-admin")
}

func textCount(ms []chat.Message) int {
	n := 0
	for _, m := range ms {
		if m.Kind == chat.KindText {
			n++
		}
	}
	return n
}

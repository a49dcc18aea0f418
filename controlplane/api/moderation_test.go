package api_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// requireBan checks a banned user's refusal: 403 banned, with until (nil:
// for good) and the reason.
func requireBan(t *testing.T, err error, until bool, reason string) *roomnet.Error {
	t.Helper()
	requireCode(t, err, 403, roomnet.CodeBanned)
	ae := err.(*roomnet.Error)
	require.Equal(t, reason, ae.Reason)
	require.Equal(t, until, ae.Until != nil, "until: %v", ae.Until)
	return ae
}

// A temporary ban refuses sign-in with its end and reason while it lasts,
// cuts the user out of their rooms, and ends by itself; a permanent one
// says why and has no end; bad input is refused and bans nothing.
func TestTemporaryBanSaysUntilWhenAndWhyAndEnds(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob := h.User("alice"), h.User("bob")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "ban", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = bob.Join(ctx, room.ID, "")
	require.NoError(t, err)

	for _, body := range []string{`{"seconds":0}`, `{"seconds":-5}`, `{"seconds":31536001}`, `{"seconds":"60"}`, `{"reason":"` + longText(201) + `"}`, `{"seconds":60,"until":"x"}`} {
		status, eb := raw(t, "POST", h.URL+"/api/v1/users/bob/ban", h.Admin.Token(), body)
		require.Equal(t, 400, status, "%s: %s", body, eb.Error.Message)
	}
	_, err = bob.Me(ctx)
	require.NoError(t, err, "a refused ban bans nothing")

	start := time.Now()
	require.NoError(t, h.Admin.BanFor(ctx, "bob", roomnet.Ban{Seconds: 3600, Reason: "spamming the lobby"}))
	_, err = bob.Me(ctx)
	requireCode(t, err, 401, roomnet.CodeUnauthorized)
	_, _, err = h.Anon().Login(ctx, "bob", "password-bob")
	ae := requireBan(t, err, true, "spamming the lobby")
	require.WithinDuration(t, start.Add(time.Hour), *ae.Until, time.Minute)
	require.Contains(t, ae.Message, "because spamming the lobby")
	_, _, err = h.Anon().Login(ctx, "bob", "wrong-password")
	requireCode(t, err, 401, roomnet.CodeUnauthorized) // the ban is told only to the right password
	members, err := alice.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1, "the ban cut bob out of the room")
	list, err := h.Admin.SearchUsers(ctx, "bob")
	require.NoError(t, err)
	require.True(t, list.Users[0].Banned)
	require.Equal(t, "spamming the lobby", list.Users[0].BanReason)
	require.NotNil(t, list.Users[0].BanUntil)
	audit, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, "ban", audit.Entries[0].Action)
	require.Regexp(t, `^until \S+ spamming the lobby$`, audit.Entries[0].Detail)

	// A short one ends by itself: bob signs in and joins again.
	require.NoError(t, h.Admin.Unban(ctx, "bob"))
	require.NoError(t, h.Admin.BanFor(ctx, "bob", roomnet.Ban{Seconds: 1, Reason: "cool off"}))
	_, _, err = h.Anon().Login(ctx, "bob", "password-bob")
	if err != nil { // (a slow machine may already be past the second)
		ae = requireBan(t, err, true, "cool off")
		time.Sleep(time.Until(ae.Until.Add(100 * time.Millisecond)))
	}
	bob2, _, err := h.Anon().Login(ctx, "bob", "password-bob")
	require.NoError(t, err, "the temporary ban ended")
	_, err = bob2.Join(ctx, room.ID, "")
	require.NoError(t, err)
	list, err = h.Admin.SearchUsers(ctx, "bob")
	require.NoError(t, err)
	require.False(t, list.Users[0].Banned)

	// A permanent ban with a reason, and one without (as before).
	require.NoError(t, h.Admin.BanFor(ctx, "bob", roomnet.Ban{Reason: "cheating"}))
	_, _, err = h.Anon().Login(ctx, "bob", "password-bob")
	ae = requireBan(t, err, false, "cheating")
	require.Equal(t, "this account is banned: cheating", ae.Message)
	require.NoError(t, h.Admin.Unban(ctx, "bob"))
	require.NoError(t, h.Admin.Ban(ctx, "bob"))
	_, _, err = h.Anon().Login(ctx, "bob", "password-bob")
	requireBan(t, err, false, "")
	require.NoError(t, h.Admin.Unban(ctx, "bob"))
	_, _, err = h.Anon().Login(ctx, "bob", "password-bob")
	require.NoError(t, err)
}

func longText(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}

// moderator makes a user a moderator and returns their client.
func moderator(t *testing.T, h *roomnettest.Harness, name string) *roomnet.Client {
	t.Helper()
	c := h.User(name)
	u, err := h.Admin.SetRole(roomnettest.Context(t, 10*time.Second), name, "moderator")
	require.NoError(t, err)
	require.Equal(t, "moderator", u.Role)
	return c
}

// A moderator keeps order among players (mute, ban, kick, close, delete,
// announce, read the audit log and every room) but runs nothing else:
// roles, figures, relays, invites, and nothing against admins or other
// moderators.
func TestModeratorModeratesPlayersOnly(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	mona := moderator(t, h, "mona")
	milo := moderator(t, h, "milo")
	alice, bob := h.User("alice"), h.User("bob")
	priv, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "private", MaxPlayers: 4})
	require.NoError(t, err)
	_, err = bob.JoinInvite(ctx, priv.InviteCode)
	require.NoError(t, err)
	pc := chatFor(t, h, bob)
	seq, err := result(t, pc.Send("lobby:main", "spam spam"))
	require.NoError(t, err)

	// What a moderator may do.
	_, err = mona.Users(ctx, 0)
	require.NoError(t, err)
	rooms, err := mona.AdminRooms(ctx, nil)
	require.NoError(t, err)
	require.Len(t, rooms.Rooms, 1)
	require.Empty(t, rooms.Rooms[0].InviteCode, "invites are for admins")
	got, err := mona.Room(ctx, priv.ID)
	require.NoError(t, err, "a moderator sees private rooms")
	require.Empty(t, got.InviteCode)
	members, err := mona.Members(ctx, priv.ID)
	require.NoError(t, err)
	require.Len(t, members, 2)
	_, err = mona.Mute(ctx, "bob", time.Minute, "calm down")
	require.NoError(t, err)
	require.NoError(t, mona.Unmute(ctx, "bob"))
	require.NoError(t, mona.DeleteMessage(ctx, "lobby:main", seq))
	require.NoError(t, mona.Do(ctx, "POST", "/api/v1/admin/chat/announce", roomnet.Announce{Conv: "lobby:main", Text: "be nice"}, nil))
	require.NoError(t, mona.Kick(ctx, priv.ID, "bob"))
	require.NoError(t, mona.CloseRoom(ctx, priv.ID))
	require.NoError(t, mona.BanFor(ctx, "bob", roomnet.Ban{Seconds: 60, Reason: "spam"}))
	require.NoError(t, mona.Unban(ctx, "bob"))
	audit, err := mona.Audit(ctx, 0)
	require.NoError(t, err)
	var actions []string
	for _, e := range audit.Entries {
		if e.Actor == "mona" {
			actions = append(actions, e.Action)
		}
	}
	require.Equal(t, []string{"unban", "ban", "close_room", "kick", "announce", "delete_message", "unmute", "mute"}, actions)

	// What a moderator may not do: 403, and nothing changes.
	admin := h.Config.Auth.AdminUsername
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"set a role", func() error { _, err := mona.SetRole(ctx, "alice", "moderator"); return err }()},
		{"promote themselves", func() error { _, err := mona.SetRole(ctx, "mona", "admin"); return err }()},
		{"ban an admin", mona.BanFor(ctx, admin, roomnet.Ban{Reason: "coup"})},
		{"ban a moderator", mona.Ban(ctx, "milo")},
		{"unban a moderator", mona.Unban(ctx, "milo")},
		{"mute an admin", func() error { _, err := mona.Mute(ctx, admin, time.Minute, ""); return err }()},
		{"mute a moderator", func() error { _, err := mona.Mute(ctx, "milo", time.Minute, ""); return err }()},
		{"read the figures", func() error { _, err := mona.Overview(ctx); return err }()},
		{"list relays", func() error { _, err := mona.Relays(ctx); return err }()},
		{"an unlisted admin route", mona.Do(ctx, "GET", "/api/v1/admin/nothing", nil, nil)},
	} {
		requireCode(t, tc.err, 403, roomnet.CodeForbidden)
	}
	_, err = mona.RotateInvite(ctx, rooms.Rooms[0].ID)
	require.Error(t, err, "the invite is the host's or an admin's")
	for _, name := range []string{"alice", "mona", "milo", admin} {
		l, err := h.Admin.SearchUsers(ctx, name)
		require.NoError(t, err)
		require.False(t, l.Users[0].Banned, name)
		require.Nil(t, l.Users[0].MutedUntil, name)
	}
	l, err := h.Admin.SearchUsers(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "player", l.Users[0].Role)
	l, err = h.Admin.SearchUsers(ctx, "mona")
	require.NoError(t, err)
	require.Equal(t, "moderator", l.Users[0].Role)
	_, err = milo.Me(ctx)
	require.NoError(t, err)

	// A player gets none of it; an admin demotes a moderator and the
	// tools go with the role at once.
	_, err = alice.AdminRooms(ctx, nil)
	requireCode(t, err, 403, roomnet.CodeForbidden)
	_, err = h.Admin.SetRole(ctx, "mona", "player")
	require.NoError(t, err)
	_, err = mona.Users(ctx, 0)
	requireCode(t, err, 403, roomnet.CodeForbidden)
}

// A purge deletes every text message of a user exactly as a single
// delete does (bodies gone, deleted frames to the clients), in one
// conversation or all, counts them, and is audited; a user without
// messages is 0; others' messages stay.
func TestPurgeDeletesEveryMessageOfAUser(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	mona := moderator(t, h, "mona")
	alice, bob := h.User("alice"), h.User("bob")
	h.User("carol")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "r", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = bob.Join(ctx, room.ID, "")
	require.NoError(t, err)
	ac, bc := chatFor(t, h, alice), chatFor(t, h, bob)
	conv := "room:" + room.ID
	require.NoError(t, bc.Join(ctx, conv))
	var spam []uint64
	for _, text := range []string{"buy gold", "cheap gold"} {
		seq, err := result(t, bc.Send("lobby:main", text))
		require.NoError(t, err)
		spam = append(spam, seq)
	}
	inRoom, err := result(t, bc.Send(conv, "gold in the room too"))
	require.NoError(t, err)
	kept, err := result(t, ac.Send("lobby:main", "hello all"))
	require.NoError(t, err)
	waitEvent(t, ac, func(e chatclient.Event) bool { return e.Type == chatclient.EventMessage && e.Msg.Seq == kept })

	// One conversation first.
	p, err := mona.PurgeMessages(ctx, "bob", conv)
	require.NoError(t, err)
	require.Equal(t, roomnet.Purged{Username: "bob", Purged: 1}, p)
	msgs, _, err := ac.History(ctx, conv, 0, 50)
	require.NoError(t, err)
	for _, m := range msgs {
		if m.Seq == inRoom {
			require.Equal(t, chat.KindDeleted, m.Kind)
			require.Empty(t, m.Body)
		}
	}
	// Then everything: the lobby's clients are told.
	p, err = mona.PurgeMessages(ctx, "bob", "")
	require.NoError(t, err)
	require.Equal(t, 2, p.Purged)
	seen := map[uint64]bool{}
	for len(seen) < 2 {
		ev := waitEvent(t, ac, func(e chatclient.Event) bool { return e.Type == chatclient.EventDeleted && e.Conv == "lobby:main" })
		seen[ev.Seq] = true
	}
	require.True(t, seen[spam[0]] && seen[spam[1]], "deleted frames for %v: %v", spam, seen)
	msgs, _, err = ac.History(ctx, "lobby:main", 0, 50)
	require.NoError(t, err)
	for _, m := range msgs {
		switch m.Seq {
		case spam[0], spam[1]:
			require.Equal(t, chat.KindDeleted, m.Kind)
			require.Empty(t, m.Body)
		case kept:
			require.Equal(t, chat.KindText, m.Kind)
			require.Equal(t, "hello all", m.Body, "others' messages stay")
		}
	}
	p, err = mona.PurgeMessages(ctx, "bob", "")
	require.NoError(t, err)
	require.Zero(t, p.Purged, "nothing left")
	p, err = mona.PurgeMessages(ctx, "carol", "")
	require.NoError(t, err)
	require.Zero(t, p.Purged, "a user who never wrote")

	// Refusals.
	_, err = mona.PurgeMessages(ctx, h.Config.Auth.AdminUsername, "")
	requireCode(t, err, 403, roomnet.CodeForbidden)
	_, err = alice.PurgeMessages(ctx, "bob", "")
	requireCode(t, err, 403, roomnet.CodeForbidden)
	_, err = mona.PurgeMessages(ctx, "nobody", "")
	requireCode(t, err, 404, roomnet.CodeNotFound)
	_, err = mona.PurgeMessages(ctx, "bob", "nowhere")
	requireCode(t, err, 400, roomnet.CodeBadRequest)
	status, eb := raw(t, "POST", h.URL+"/api/v1/admin/users/bob/purge-messages", mona.Token(), `{"conv":"lobby:main","all":true}`)
	require.Equal(t, 400, status, eb.Error.Message)
	require.Equal(t, roomnet.CodeInvalidJSON, eb.Error.Code)
	status, _ = raw(t, "POST", h.URL+"/api/v1/admin/users/bob/purge-messages", mona.Token(), ``)
	require.Equal(t, 200, status, "no body: every conversation")

	// The audit log counts; a single delete keeps what was said.
	require.NoError(t, mona.DeleteMessage(ctx, "lobby:main", kept))
	audit, err := mona.Audit(ctx, 0)
	require.NoError(t, err)
	var got []string
	for _, e := range audit.Entries {
		if e.Action == "purge_messages" || e.Action == "delete_message" {
			got = append(got, e.Action+" "+e.Target+" "+e.Detail)
		}
	}
	require.Equal(t, []string{
		"delete_message lobby:main#" + fmt.Sprint(kept) + " alice: hello all",
		"purge_messages bob 0 messages",
		"purge_messages carol 0 messages",
		"purge_messages bob 0 messages",
		"purge_messages bob 2 messages",
		"purge_messages bob 1 messages in " + conv,
	}, got)
}

// A profile shows the account, its ban and mute with reasons, the rooms
// the user is and was in, and what was done about them.
func TestProfileShowsRoomsBanMuteAndHistory(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	mona := moderator(t, h, "mona")
	alice, bob := h.User("alice"), h.User("bob")
	now, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "now", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	past, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "past", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	kicked, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "kicked", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	for _, r := range []roomnet.CreateRoomResponse{now, past, kicked} {
		_, err = bob.Join(ctx, r.ID, "")
		require.NoError(t, err)
	}
	require.NoError(t, bob.Leave(ctx, past.ID))
	require.NoError(t, mona.Kick(ctx, kicked.ID, "bob"))
	_, err = mona.Mute(ctx, "bob", time.Hour, "shouting")
	require.NoError(t, err)

	p, err := mona.Profile(ctx, "bob")
	require.NoError(t, err)
	require.Equal(t, "bob", p.User.Username)
	require.Nil(t, p.Ban)
	require.NotNil(t, p.Mute)
	require.Equal(t, "shouting", p.Mute.Reason)
	rooms := map[string]roomnet.ProfileRoom{}
	for _, r := range p.Rooms {
		rooms[r.Name] = r
	}
	require.Len(t, rooms, 3)
	require.True(t, rooms["now"].Current)
	require.Equal(t, "active", rooms["now"].State)
	require.False(t, rooms["past"].Current, "left: known from its join key")
	require.Empty(t, rooms["past"].State)
	require.False(t, rooms["kicked"].Current)
	require.Equal(t, "kicked", rooms["kicked"].State)
	var history []string
	for _, e := range p.History {
		history = append(history, e.Actor+" "+e.Action)
	}
	require.Equal(t, []string{"mona mute", "mona kick"}, history)

	// A ban shows with its end and reason; once banned, bob's rooms end.
	require.NoError(t, h.Admin.BanFor(ctx, "bob", roomnet.Ban{Seconds: 600, Reason: "griefing"}))
	p, err = mona.Profile(ctx, "bob")
	require.NoError(t, err)
	require.NotNil(t, p.Ban)
	require.Equal(t, "griefing", p.Ban.Reason)
	require.NotNil(t, p.Ban.Until)
	require.True(t, p.User.Banned)
	for _, r := range p.Rooms {
		require.False(t, r.Current, r.Name)
	}
	require.Equal(t, "ban", p.History[0].Action)

	// A user with nothing to show; refusals.
	p, err = mona.Profile(ctx, "alice")
	require.NoError(t, err)
	require.Len(t, p.Rooms, 3, "the rooms alice hosts")
	require.Empty(t, p.History)
	_, err = mona.Profile(ctx, "nobody")
	requireCode(t, err, 404, roomnet.CodeNotFound)
	_, err = alice.Profile(ctx, "bob")
	requireCode(t, err, 403, roomnet.CodeForbidden)
}

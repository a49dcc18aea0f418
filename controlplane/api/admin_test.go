package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

func chatFor(t *testing.T, h *roomnettest.Harness, c *roomnet.Client) *chatclient.Client {
	t.Helper()
	ctx := roomnettest.Context(t, 30*time.Second)
	cc, err := chatclient.Dial(ctx, chatclient.Options{URL: "ws" + strings.TrimPrefix(h.URL, "http") + "/ws", Token: c.Token(), MaxAttempts: 2})
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	require.NoError(t, cc.Join(ctx, "lobby:main"))
	return cc
}

func result(t *testing.T, p *chatclient.Pending) (uint64, error) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("send neither acknowledged nor failed")
	}
	return p.Result()
}

// waitEvent reads events until one matches or the time is up.
func waitEvent(t *testing.T, cc *chatclient.Client, match func(chatclient.Event) bool) chatclient.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-cc.Events():
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatal("event did not come")
		}
	}
}

func TestRolesAndUserSearch(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 30*time.Second)
	h.User("lena")
	h.User("leo")
	h.User("max")
	l, err := h.Admin.SearchUsers(ctx, "le")
	require.NoError(t, err)
	var names []string
	for _, u := range l.Users {
		names = append(names, u.Username)
	}
	require.ElementsMatch(t, []string{"lena", "leo"}, names)
	l, err = h.Admin.SearchUsers(ctx, "%")
	require.NoError(t, err)
	require.Empty(t, l.Users, "LIKE wildcards in the query are literal")

	u, err := h.Admin.SetRole(ctx, "max", "admin")
	require.NoError(t, err)
	require.Equal(t, "admin", u.Role)
	_, err = h.Admin.SetRole(ctx, "max", "root")
	requireCode(t, err, 400, roomnet.CodeBadRequest)
	_, err = h.Admin.SetRole(ctx, h.Config.Auth.AdminUsername, "player")
	requireCode(t, err, 400, roomnet.CodeBadRequest) // nobody demotes themselves
	_, err = h.Admin.SetRole(ctx, "nobody", "admin")
	requireCode(t, err, 404, roomnet.CodeNotFound)

	audit, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	require.Len(t, audit.Entries, 1, "only the change that happened is audited")
	require.Equal(t, "set_role", audit.Entries[0].Action)
	require.Equal(t, "max", audit.Entries[0].Target)
	require.Equal(t, "admin", audit.Entries[0].Detail)
	require.Equal(t, h.Config.Auth.AdminUsername, audit.Entries[0].Actor)
}

func TestAdminRoomsFilterAndPage(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	nora := h.User("nora")
	var ids []string
	for i := range 4 {
		r, err := nora.CreateRoom(ctx, roomnet.CreateRoom{Name: fmt.Sprintf("Alpha %d", i), Game: "cs16", MaxPlayers: 4, Public: i%2 == 0})
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	_, err := nora.CreateRoom(ctx, roomnet.CreateRoom{Name: "Beta", Game: "minecraft", MaxPlayers: 4})
	require.NoError(t, err)
	require.NoError(t, nora.CloseRoom(ctx, ids[0]))

	list := func(q url.Values) []string {
		l, err := h.Admin.AdminRooms(ctx, q)
		require.NoError(t, err)
		var out []string
		for _, r := range l.Rooms {
			out = append(out, r.Name)
			require.NotEmpty(t, r.InviteCode, "admins see invites")
		}
		return out
	}
	require.Equal(t, []string{"Beta", "Alpha 3", "Alpha 2", "Alpha 1", "Alpha 0"}, list(url.Values{}), "every room, private too, newest first")
	require.Equal(t, []string{"Alpha 3", "Alpha 2", "Alpha 1"}, list(url.Values{"q": {"alpha"}, "state": {"open"}}))
	require.Equal(t, []string{"Alpha 0"}, list(url.Values{"state": {"closed"}}))
	require.Equal(t, []string{"Beta"}, list(url.Values{"game": {"minecraft"}}))
	require.Equal(t, []string{"Alpha 1", "Alpha 0"}, list(url.Values{"before": {ids[2]}}), "the cursor pages backwards")
	require.Equal(t, []string{"Alpha 2"}, list(url.Values{"q": {ids[2]}}), "a room id finds its room")

	_, err = h.Admin.AdminRooms(ctx, url.Values{"state": {"maybe"}})
	requireCode(t, err, 400, roomnet.CodeBadRequest)
	_, err = nora.AdminRooms(ctx, url.Values{})
	requireCode(t, err, 403, roomnet.CodeForbidden)
}

func TestModeratorDeletesMutesAndAnnounces(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 90*time.Second)
	olga, pete := h.User("olga"), h.User("pete")
	oc, pc := chatFor(t, h, olga), chatFor(t, h, pete)

	seq, err := result(t, pc.Send("lobby:main", "buy gold at example.com"))
	require.NoError(t, err)
	waitEvent(t, oc, func(e chatclient.Event) bool { return e.Type == chatclient.EventMessage && e.Msg.Seq == seq })

	require.NoError(t, h.Admin.DeleteMessage(ctx, "lobby:main", seq))
	ev := waitEvent(t, oc, func(e chatclient.Event) bool { return e.Type == chatclient.EventDeleted })
	require.Equal(t, seq, ev.Seq)
	msgs, _, err := oc.History(ctx, "lobby:main", 0, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, chat.KindDeleted, msgs[0].Kind)
	require.Empty(t, msgs[0].Body, "the body is gone from the store")
	err = h.Admin.DeleteMessage(ctx, "lobby:main", seq)
	requireCode(t, err, 404, roomnet.CodeNotFound) // once deleted, nothing to delete
	err = h.Admin.DeleteMessage(ctx, "lobby:main", 999)
	requireCode(t, err, 404, roomnet.CodeNotFound)

	st, err := h.Admin.Mute(ctx, "pete", time.Hour, "spam")
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), *st.Until, time.Minute)
	_, err = result(t, pc.Send("lobby:main", "still here"))
	require.ErrorContains(t, err, chat.ErrMuted)
	users, err := h.Admin.SearchUsers(ctx, "pete")
	require.NoError(t, err)
	require.NotNil(t, users.Users[0].MutedUntil)
	// A mute outlives a restart: it is stored.
	h.Restart()
	pc = chatFor(t, h, pete)
	_, err = result(t, pc.Send("lobby:main", "after restart"))
	require.ErrorContains(t, err, chat.ErrMuted)
	require.NoError(t, h.Admin.Unmute(ctx, "pete"))
	_, err = result(t, pc.Send("lobby:main", "thanks"))
	require.NoError(t, err)
	_, err = h.Admin.Mute(ctx, "pete", 0, "")
	requireCode(t, err, 400, roomnet.CodeBadRequest)
	_, err = h.Admin.Mute(ctx, "pete", 400*24*time.Hour, "")
	requireCode(t, err, 400, roomnet.CodeBadRequest)
	// Counts whose nanoseconds overflow are refused, not wrapped into a
	// short (or negative) mute.
	for _, secs := range []int{18446744074, math.MaxInt64} {
		err = h.Admin.Do(ctx, "POST", "/api/v1/admin/users/pete/mute", roomnet.Mute{Seconds: secs}, nil)
		requireCode(t, err, 400, roomnet.CodeBadRequest)
	}
	err = h.Admin.Do(ctx, "POST", "/api/v1/admin/chat/announce", roomnet.Announce{Conv: "room:nosuchroom", Text: "x"}, nil)
	requireCode(t, err, 404, roomnet.CodeNotFound)

	var ann struct{ Seq uint64 }
	require.NoError(t, h.Admin.Do(ctx, "POST", "/api/v1/admin/chat/announce", roomnet.Announce{Conv: "lobby:main", Text: "maintenance at 22:00"}, &ann))
	require.Positive(t, ann.Seq)
	err = h.Admin.Do(ctx, "POST", "/api/v1/admin/chat/announce", roomnet.Announce{Conv: "dm:1:2", Text: "x"}, nil)
	requireCode(t, err, 400, roomnet.CodeBadRequest)

	audit, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action)
	}
	require.Equal(t, []string{"announce", "unmute", "mute", "delete_message"}, actions, "newest first, refused actions absent")
}

func TestAuditPagesBackwards(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	h.User("quinn")
	for range 105 {
		_, err := h.Admin.SetRole(ctx, "quinn", "player")
		require.NoError(t, err)
	}
	first, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	require.Len(t, first.Entries, 100)
	require.NotZero(t, first.Next)
	second, err := h.Admin.Audit(ctx, first.Next)
	require.NoError(t, err)
	require.Len(t, second.Entries, 5)
	require.Zero(t, second.Next)
	require.Less(t, second.Entries[0].ID, first.Entries[99].ID)
}

func TestPathReportsReachAdminsOnly(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	rita, sam, tom := h.User("rita"), h.User("sam"), h.User("tom")
	room, err := rita.CreateRoom(ctx, roomnet.CreateRoom{Name: "paths", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = sam.Join(ctx, room.ID, "")
	require.NoError(t, err)

	links := []roomnet.Link{{Peer: "rita", IP: "100.64.0.1", Direct: false, Relay: "roomnet", RTTMS: 12.5}}
	require.NoError(t, sam.ReportPaths(ctx, room.ID, links))
	err = tom.ReportPaths(ctx, room.ID, links)
	requireCode(t, err, 409, roomnet.CodeNotMember)
	err = sam.ReportPaths(ctx, room.ID, []roomnet.Link{{Peer: "rita", RTTMS: -1}})
	requireCode(t, err, 400, roomnet.CodeBadRequest)

	members, err := rita.Members(ctx, room.ID)
	require.NoError(t, err)
	for _, m := range members {
		if m.Username == "sam" {
			require.Equal(t, links, m.Links, "members see the paths (no endpoints in these)")
			require.Equal(t, "client", m.PathSource)
		} else {
			require.Empty(t, m.Links)
		}
	}
	direct := []roomnet.Link{{Peer: "rita", IP: "100.64.0.1", Direct: true, Addr: "198.51.100.4:41641", RTTMS: 2}}
	require.NoError(t, sam.ReportPaths(ctx, room.ID, direct))
	members, err = rita.Members(ctx, room.ID)
	require.NoError(t, err)
	for _, m := range members {
		if m.Username == "sam" {
			require.Equal(t, []roomnet.Link{{Peer: "rita", IP: "100.64.0.1", Direct: true, RTTMS: 2}}, m.Links, "members do not see each other's endpoints")
		}
	}
	members, err = h.Admin.Members(ctx, room.ID)
	require.NoError(t, err)
	for _, m := range members {
		if m.Username == "sam" {
			require.Equal(t, direct, m.Links, "admins do")
		}
	}
	// Through a roommate's peer relay: marked so for everyone, the
	// relay's endpoint for admins only; never also direct or DERP.
	viaPeer := []roomnet.Link{{Peer: "rita", IP: "100.64.0.1", PeerRelay: true, Addr: "203.0.113.7:40000:vni:7", RTTMS: 4}}
	require.NoError(t, sam.ReportPaths(ctx, room.ID, viaPeer))
	for viewer, want := range map[*roomnet.Client][]roomnet.Link{
		rita:    {{Peer: "rita", IP: "100.64.0.1", PeerRelay: true, RTTMS: 4}},
		h.Admin: viaPeer,
	} {
		members, err = viewer.Members(ctx, room.ID)
		require.NoError(t, err)
		for _, m := range members {
			if m.Username == "sam" {
				require.Equal(t, want, m.Links)
			}
		}
	}
	for _, bad := range []roomnet.Link{
		{Peer: "rita", IP: "100.64.0.1", PeerRelay: true, Direct: true},
		{Peer: "rita", IP: "100.64.0.1", PeerRelay: true, Relay: "roomnet"},
	} {
		requireCode(t, sam.ReportPaths(ctx, room.ID, []roomnet.Link{bad}), 400, roomnet.CodeBadRequest)
	}
	require.NoError(t, sam.ReportPaths(ctx, room.ID, links))
	members, err = h.Admin.Members(ctx, room.ID)
	require.NoError(t, err)
	for _, m := range members {
		if m.Username == "sam" {
			require.Equal(t, links, m.Links)
			require.NotNil(t, m.ReportedAt)
		} else {
			require.Empty(t, m.Links)
		}
	}
	require.NoError(t, sam.Leave(ctx, room.ID))
	members, err = h.Admin.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)
	require.Empty(t, members[0].Links)
}

func TestOverviewRelaysAndEventStream(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Web.FiguresInterval = 100 * time.Millisecond })
	ctx := roomnettest.Context(t, 60*time.Second)

	// The event stream, as the panel reads it.
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+"/api/v1/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+h.Admin.Token())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	events := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev map[string]any
				if json.Unmarshal([]byte(data), &ev) == nil {
					events <- ev
				}
			}
		}
		close(events)
	}()

	uma := h.User("uma")
	room, err := uma.CreateRoom(ctx, roomnet.CreateRoom{Name: "figures", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case ev := <-events:
			require.Equal(t, room.ID, ev["room_id"])
			seen[ev["type"].(string)] = true
		case <-ctx.Done():
			t.Fatal("no events on the stream")
		}
	}
	require.True(t, seen["room_created"] && seen["member_joined"])

	// The join is counted as it is published, a moment after the room is
	// stored: wait for a sample that has both.
	require.Eventually(t, func() bool {
		ov, err := h.Admin.Overview(ctx)
		if err != nil || ov.Now.RoomsOpen != 1 || ov.Now.MembersActive != 1 || ov.Now.RelaysUp != 1 {
			return false
		}
		joins := 0.0
		for _, f := range ov.Series {
			joins = max(joins, f.JoinsPerMin)
		}
		return joins > 0 && ov.Series[len(ov.Series)-1].RoomsOpen == 1
	}, 20*time.Second, 50*time.Millisecond, "the dashboard counts the room, its member, the join and the relay")

	rl, err := h.Admin.Relays(ctx)
	require.NoError(t, err)
	require.Len(t, rl, 1)
	require.True(t, rl[0].Healthy)
	require.NotNil(t, rl[0].Stats, "the embedded relay reports its counters")

	// A shutdown ends the stream instead of waiting for it (a restart's
	// shutdown would otherwise run into its deadline and fail).
	start := time.Now()
	h.Restart()
	require.Less(t, time.Since(start), 30*time.Second)
	select {
	case _, open := <-events:
		for open {
			_, open = <-events
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream outlived the server")
	}
}

package web_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// adminNodes reads GET /admin/nodes as the admin.
func adminNodes(t *testing.T, ctx context.Context, h *roomnettest.Harness) roomnet.NodeList {
	t.Helper()
	var out roomnet.NodeList
	require.NoError(t, h.Admin.Do(ctx, http.MethodGet, roomnet.APIVersionPrefix+"/admin/nodes", nil, &out))
	return out
}

// auditActions lists the newest audit entries as "action target".
func auditActions(t *testing.T, ctx context.Context, h *roomnettest.Harness) []string {
	t.Helper()
	list, err := h.Admin.Audit(ctx, 0)
	require.NoError(t, err)
	var out []string
	for _, e := range list.Entries {
		out = append(out, e.Action+" "+e.Target)
	}
	return out
}

// The Nodes tab lists every node of every shard with its room, member,
// addresses, the endpoint a relay saw, online state and key expiry; an
// admin expires one (after confirming: a refusal changes nothing) and
// deletes another, both audited, and the node really stops: its
// roommate's pings stop reaching it.
func TestAdminNodeViewExpiresAndDeletes(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Headscale.Shards = 2 })
	ctx := roomnettest.Context(t, 180*time.Second)
	gus, hal := h.User("gus"), h.User("hal")
	room, err := gus.CreateRoom(ctx, roomnet.CreateRoom{Name: "Node room", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	grant, err := hal.Join(ctx, room.ID, "")
	require.NoError(t, err)
	ng := roomnettest.Node(t, room.Join, "gus-pc")
	nh := roomnettest.Node(t, grant, "hal-pc")
	reach := func() error {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := ng.PingPath(pctx, nh.IP())
		return err
	}
	require.Eventually(t, func() bool { return reach() == nil }, 60*time.Second, 200*time.Millisecond, "gus's node reaches hal's")

	tab := profile(t, b)
	signInAdmin(t, tab, h)
	run(t, tab, "nodes tab", chromedp.Click(chromedp.CSS(`a[data-tab="nodes"]`)),
		waitJS(`document.querySelectorAll('#nodes tbody tr').length === 2`))
	type row struct {
		Key, Room, User, IPs, Endpoints, Status, Client, Expiry string
	}
	rows := eval[[]row](t, tab, `[...document.querySelectorAll('#nodes tbody tr')].map((r) => ({
	  Key: r.dataset.node, Room: r.querySelector('.room').textContent, User: r.querySelector('.user').textContent,
	  IPs: r.querySelector('.ips').textContent, Endpoints: r.querySelector('.endpoints').textContent,
	  Status: r.querySelector('.status').textContent, Client: r.querySelector('.client').textContent,
	  Expiry: r.querySelector('.expiry').textContent }))`)
	byUser := map[string]row{}
	for _, r := range rows {
		byUser[r.User] = r
		require.Contains(t, r.Room, "Node room")
		require.Contains(t, r.Room, room.ID)
		require.Contains(t, r.Status, "online")
		require.Equal(t, "unknown", r.Client)
		require.Equal(t, "never", r.Expiry, "tsnet nodes registered with a pre-auth key do not expire")
	}
	require.Contains(t, byUser["hal"].IPs, nh.IP().String())
	require.Contains(t, byUser["gus"].IPs, ng.IP().String())
	// Both nodes talk through our relay (direct UDP is off in tests): it
	// saw each connect from loopback.
	require.Eventually(t, func() bool {
		for _, n := range adminNodes(t, ctx, h).Nodes {
			if n.RelaySource == "" {
				return false
			}
		}
		return true
	}, 30*time.Second, 250*time.Millisecond, "the relay admitted both nodes")
	run(t, tab, "relay sources shown", waitJS(`[...document.querySelectorAll('#nodes .endpoints')].every((e) => e.textContent.includes('127.0.0.1 via relay'))`))
	judge(t, tab, "admin-nodes")
	atWidth(t, tab, 1366, 900)

	halKey := eval[string](t, tab, `document.querySelector('#nodes tbody tr .user a[href="#user/hal"]').closest('tr').dataset.node`)
	halRow := fmt.Sprintf(`#nodes tr[data-node=%q]`, halKey)
	run(t, tab, "expire refused at the confirmation",
		chromedp.Evaluate[chromedp.Void](`window.confirm = (m) => { window.asked = m; return false; }`),
		chromedp.Click(chromedp.CSS(halRow+" button.expire")),
		waitJS(`(window.asked || '').startsWith('Expire node hal-pc (hal in Node room)')`))
	require.NoError(t, reach(), "nothing happened without confirming")
	require.NotContains(t, auditActions(t, ctx, h), "expire_node "+halKey)

	run(t, tab, "expire confirmed",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(halRow+" button.expire")),
		waitJS(fmt.Sprintf(`(document.querySelector(%q) || {textContent: ''}).textContent.includes('expired')`, halRow+" .status")))
	require.Contains(t, auditActions(t, ctx, h), "expire_node "+halKey)
	require.Eventually(t, func() bool { return reach() != nil }, 30*time.Second, 500*time.Millisecond, "an expired node is cut off")
	shot(t, tab, "admin-nodes-expired")

	gusKey := eval[string](t, tab, `document.querySelector('#nodes tbody tr .user a[href="#user/gus"]').closest('tr').dataset.node`)
	run(t, tab, "delete confirmed",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#nodes tr[data-node=%q] button.delete`, gusKey))),
		waitJS(fmt.Sprintf(`document.querySelector(%q) === null`, fmt.Sprintf(`#nodes tr[data-node=%q]`, gusKey))))
	require.Contains(t, auditActions(t, ctx, h), "delete_node "+gusKey)
	for _, n := range adminNodes(t, ctx, h).Nodes {
		require.NotEqual(t, gusKey, fmt.Sprintf("%s/%d", n.Shard, n.ID), "the deleted node is gone from Headscale")
	}
	shot(t, tab, "admin-nodes-deleted")
	requireCleanConsole(t, tab)
}

// A moderator reads a room's chat they are not a member of: Watch
// room:<id> (or Read chat on the room) shows its history with the
// deleted marker, follows new messages, pages older ones, and the
// opening is audited once (following is not).
func TestModeratorReadsRoomChat(t *testing.T) {
	b := browser(t)
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 180*time.Second)
	h.User("mona")
	_, err := h.Admin.SetRole(ctx, "mona", "moderator")
	require.NoError(t, err)
	pia := h.User("pia")
	room, err := pia.CreateRoom(ctx, roomnet.CreateRoom{Name: "Pia's den", MaxPlayers: 4, Public: false})
	require.NoError(t, err)
	conv := "room:" + room.ID
	pc := chatter(t, h, pia)
	var spam uint64
	for i := 1; i <= 55; i++ { // more than one page (50)
		seq := sendWait(t, pc, conv, fmt.Sprintf("message %d", i))
		if i == 54 {
			spam = seq
		}
	}
	require.NoError(t, h.Admin.DeleteMessage(ctx, conv, spam))

	tab := profile(t, b)
	signInPanel(t, tab, h, "mona", "password-mona", "#rooms tbody tr")
	run(t, tab, "watch the room", chromedp.Click(chromedp.CSS(`a[data-tab="chat"]`)),
		chromedp.SetValue(chromedp.CSS("#watch-conv"), conv), chromedp.Click(chromedp.CSS("#watch")),
		chromedp.WaitVisible(chromedp.CSS("#room-log-list li[data-seq]")))
	require.Contains(t, eval[string](t, tab, `document.querySelector('#room-log-title').textContent`), "Pia's den")
	require.True(t, eval[bool](t, tab, `document.querySelector('#chat').hidden`))
	texts := func() []string {
		return eval[[]string](t, tab, `[...document.querySelectorAll('#room-log-list li[data-seq]')].map((li) => li.dataset.kind + '|' + li.querySelector('.body').textContent)`)
	}
	got := texts()
	require.Len(t, got, 50, "one page")
	require.Equal(t, "text|message 55", got[len(got)-1], "oldest first on screen, the newest at the bottom")
	require.Equal(t, "deleted|message deleted by a moderator", got[len(got)-2])
	require.True(t, eval[bool](t, tab, `document.querySelector('#room-log-list li.older button') !== null`))
	judge(t, tab, "moderator-room-chat")
	atWidth(t, tab, 1366, 900)

	sendWait(t, pc, conv, "said while watched")
	run(t, tab, "followed live", waitJS(`[...document.querySelectorAll('#room-log-list li[data-seq] .body')].some((b) => b.textContent === 'said while watched')`))
	run(t, tab, "older page", chromedp.Click(chromedp.CSS("#room-log-list li.older button")),
		waitJS(`document.querySelectorAll('#room-log-list li[data-seq]').length === 57 && !document.querySelector('#room-log-list li.older')`))
	// 55 texts, one of them deleted, one more said while watched, plus
	// the room's system messages (created): the first shown is the first.
	require.Equal(t, "1", eval[string](t, tab, `document.querySelector('#room-log-list li[data-seq]').dataset.seq`))

	var reads int
	for _, a := range auditActions(t, ctx, h) {
		if a == "read_chat "+room.ID {
			reads++
		}
	}
	require.Equal(t, 1, reads, "opening is audited once; following and paging are not")
	run(t, tab, "the read in the audit log, named by its room", chromedp.Click(chromedp.CSS(`a[data-tab="audit"]`)),
		waitJS(fmt.Sprintf(`(document.querySelector('#audit tr[data-action="read_chat"] td.target') || {}).textContent === %q`, "Pia's den ("+room.ID+")")))
	run(t, tab, "back to the chat tab", chromedp.Click(chromedp.CSS(`a[data-tab="chat"]`)), chromedp.WaitVisible(chromedp.CSS("#room-log-close")))

	run(t, tab, "back to the lobby", chromedp.Click(chromedp.CSS("#room-log-close")),
		waitJS(`document.querySelector('#room-log').hidden && !document.querySelector('#chat').hidden`))
	shot(t, tab, "moderator-room-chat-closed")
	requireCleanConsole(t, tab)
}

package service

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/types/key"

	cp "github.com/roomnet/roomnet/controlplane"
)

// The node view names each node by its room and member, adds the
// endpoints roommates report and the address a relay admitted it from;
// expire and delete are the admins', audited, and a delete removes the
// node after the grace.
func TestNodesViewAndActions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	admin, mod := f.user("root", cp.RoleAdmin), f.user("mo", cp.RoleModerator)
	alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
	roomID, hostGrant := f.room(alice, true, "")
	bobGrant, _, err := f.svc.JoinRoom(ctx, bob, roomID, "")
	require.NoError(t, err)
	an, err := f.hs.register(hostGrant.AuthKey)
	require.NoError(t, err)
	bn, err := f.hs.register(bobGrant.AuthKey)
	require.NoError(t, err)
	stray, err := f.hs.CreateUser(ctx, "not-a-room")
	require.NoError(t, err)
	f.hs.mu.Lock()
	strayNode := f.hs.nodes[an.ID]
	strayNode.ID, strayNode.UserID, strayNode.UserName, strayNode.PreAuthKeyID = f.hs.id(), stray.ID, stray.Name, 0
	f.hs.nodes[strayNode.ID] = strayNode
	f.hs.mu.Unlock()

	_, _, err = f.svc.Nodes(ctx, mod)
	require.ErrorIs(t, err, cp.ErrForbidden, "the node view is the admins'")
	_, err = f.svc.ActOnNode(ctx, mod, "default", bn.ID, NodeExpire)
	require.ErrorIs(t, err, cp.ErrForbidden)

	bn.IPs = []netip.Addr{netip.MustParseAddr("100.64.0.9")}
	f.hs.mu.Lock()
	f.hs.nodes[bn.ID] = bn
	f.hs.mu.Unlock()
	require.NoError(t, f.svc.ReportPaths(ctx, alice, roomID, []Link{
		{Peer: "bob", IP: "100.64.0.9", Direct: true, Addr: "203.0.113.5:41641"},
		{Peer: "bob", IP: "100.64.0.77", Direct: true, Addr: "198.51.100.1:1"}, // another address: not bob's node
	}))
	nk := key.NewNode().Public()
	an.NodeKey = nk.String()
	f.hs.mu.Lock()
	f.hs.nodes[an.ID] = an
	f.hs.mu.Unlock()
	f.svc.noteAdmitted(nk, netip.MustParseAddr("192.0.2.4"))

	nodes, failed, err := f.svc.Nodes(ctx, admin)
	require.NoError(t, err)
	require.Empty(t, failed)
	require.Len(t, nodes, 3)
	by := map[uint64]NodeView{}
	for _, n := range nodes {
		by[n.ID] = n
	}
	require.Equal(t, roomID, by[an.ID].Room.ID)
	require.Equal(t, "alice", by[an.ID].Username)
	require.Equal(t, "192.0.2.4", by[an.ID].RelaySource.String())
	require.Equal(t, "bob", by[bn.ID].Username)
	require.Equal(t, []string{"203.0.113.5:41641"}, by[bn.ID].Endpoints)
	require.Empty(t, by[strayNode.ID].Room.ID, "a Headscale user that is no room")
	require.Empty(t, by[strayNode.ID].Username)

	_, err = f.svc.ActOnNode(ctx, admin, "default", bn.ID, "reboot")
	require.ErrorIs(t, err, cp.ErrInvalid)
	_, err = f.svc.ActOnNode(ctx, admin, "nowhere", bn.ID, NodeExpire)
	require.ErrorIs(t, err, cp.ErrNotFound)
	_, err = f.svc.ActOnNode(ctx, admin, "default", 9999, NodeExpire)
	require.ErrorIs(t, err, cp.ErrNotFound)

	v, err := f.svc.ActOnNode(ctx, admin, "default", bn.ID, NodeExpire)
	require.NoError(t, err)
	require.Equal(t, "bob", v.Username)
	n, ok := f.hs.node(bn.ID)
	require.True(t, ok, "expired, not deleted")
	require.False(t, n.Online)
	f.hs.mu.Lock()
	require.True(t, f.hs.keys[bn.PreAuthKeyID].Expiration.Before(time.Now().Add(time.Second)), "its join key expired too")
	f.hs.mu.Unlock()

	_, err = f.svc.ActOnNode(ctx, admin, "default", an.ID, NodeDelete)
	require.NoError(t, err)
	f.eventually("the deleted node is gone", func() error {
		if _, ok := f.hs.node(an.ID); ok {
			return errors.New("still there")
		}
		return nil
	})
	log, err := f.svc.AuditLog(ctx, admin, 0, 10)
	require.NoError(t, err)
	require.Equal(t, cp.AuditDeleteNode, log[0].Action)
	require.Contains(t, log[0].Detail, "of alice")
	require.Equal(t, cp.AuditExpireNode, log[1].Action)
	require.True(t, strings.HasPrefix(log[1].Target, "default/"))

	// A shard that does not answer is reported; the listing goes on.
	f.hs.setDown(true)
	nodes, failed, err = f.svc.Nodes(ctx, admin)
	require.NoError(t, err)
	require.Empty(t, nodes)
	require.Len(t, failed, 1)
	_, err = f.svc.ActOnNode(ctx, admin, "default", bn.ID, NodeDelete)
	require.ErrorIs(t, err, cp.ErrUnavailable)
}

// historyDouble is a chat store's history for ReadChat.
type historyDouble struct {
	chatDouble
	msgs []ChatMessage // by seq from 1
}

func (h *historyDouble) ChatHistory(_ context.Context, _ string, before, after uint64, limit int) ([]ChatMessage, error) {
	var out []ChatMessage
	if after > 0 {
		for _, m := range h.msgs {
			if m.Seq > after && len(out) < limit {
				out = append(out, m)
			}
		}
		return out, nil
	}
	for i := len(h.msgs) - 1; i >= 0 && len(out) < limit; i-- {
		if before == 0 || h.msgs[i].Seq < before {
			out = append([]ChatMessage{h.msgs[i]}, out...)
		}
	}
	return out, nil
}

func TestReadChatRulesPagesAndAudit(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	admin, mod, pete := f.user("root", cp.RoleAdmin), f.user("mo", cp.RoleModerator), f.user("pete", cp.RolePlayer)
	roomID, _ := f.room(pete, false, "")
	conv := "room:" + roomID

	_, err := f.svc.ReadChat(ctx, mod, conv, 0, 0, 0)
	require.ErrorIs(t, err, cp.ErrNotFound, "no chat")
	f.svc.SetModerator(&chatDouble{})
	_, err = f.svc.ReadChat(ctx, mod, conv, 0, 0, 0)
	require.ErrorIs(t, err, cp.ErrNotFound, "chat that cannot read history")

	h := &historyDouble{}
	for i := uint64(1); i <= 7; i++ {
		h.msgs = append(h.msgs, ChatMessage{Seq: i, Kind: "text", Body: "m"})
	}
	h.msgs[3].Kind, h.msgs[3].Body = "deleted", ""
	f.svc.SetModerator(h)
	_, err = f.svc.ReadChat(ctx, pete, conv, 0, 0, 0)
	require.ErrorIs(t, err, cp.ErrForbidden)
	for _, c := range []struct {
		conv                 string
		before, after, limit uint64
	}{{"dm:1:2", 0, 0, 0}, {"nowhere", 0, 0, 0}, {conv, 2, 1, 0}, {conv, 0, 0, ChatPageMax + 1}, {conv, 1 << 63, 0, 0}} {
		_, err = f.svc.ReadChat(ctx, mod, c.conv, c.before, c.after, int(c.limit))
		require.ErrorIs(t, err, cp.ErrInvalid, "%+v", c)
	}
	_, err = f.svc.ReadChat(ctx, mod, "room:nope", 0, 0, 0)
	require.ErrorIs(t, err, cp.ErrNotFound)

	p, err := f.svc.ReadChat(ctx, mod, conv, 0, 0, 3)
	require.NoError(t, err)
	require.Equal(t, []uint64{7, 6, 5}, seqs(p.Messages), "newest first")
	require.Equal(t, uint64(5), p.Next)
	p, err = f.svc.ReadChat(ctx, mod, conv, p.Next, 0, 3)
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 3, 2}, seqs(p.Messages))
	require.Equal(t, "deleted", p.Messages[0].Kind, "deleted markers as the store has them")
	p, err = f.svc.ReadChat(ctx, mod, conv, p.Next, 0, 3)
	require.NoError(t, err)
	require.Equal(t, []uint64{1}, seqs(p.Messages))
	require.Zero(t, p.Next, "no older page")
	p, err = f.svc.ReadChat(ctx, mod, conv, 0, 5, 0)
	require.NoError(t, err)
	require.Equal(t, []uint64{6, 7}, seqs(p.Messages), "following: oldest first")
	require.Equal(t, uint64(7), p.Next)
	p, err = f.svc.ReadChat(ctx, mod, conv, 0, 7, 0)
	require.NoError(t, err)
	require.Empty(t, p.Messages)
	require.Equal(t, uint64(7), p.Next, "nothing new: the same cursor")
	_, err = f.svc.ReadChat(ctx, admin, "lobby:main", 0, 0, 0)
	require.NoError(t, err)

	log, err := f.svc.AuditLog(ctx, admin, 0, 10)
	require.NoError(t, err)
	var reads []string
	for _, e := range log {
		if e.Action == cp.AuditReadChat {
			reads = append(reads, e.Actor+" "+e.Target)
		}
	}
	require.Equal(t, []string{"mo " + roomID}, reads, "one opening of the room audited; cursors and lobbies are not")
}

func seqs(ms []ChatMessage) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

package service

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
)

// chatDouble records what moderation asked of chat (the real chat server
// is exercised by the api and web tests).
type chatDouble struct{ calls []string }

func (c *chatDouble) DeleteMessage(_ context.Context, conv string, seq uint64) error {
	c.calls = append(c.calls, "delete "+conv)
	return nil
}

func (c *chatDouble) Mute(_ context.Context, _ uint64, until time.Time, _ string) error {
	c.calls = append(c.calls, "mute "+until.Format(time.RFC3339))
	return nil
}

func (c *chatDouble) Unmute(context.Context, uint64) error {
	c.calls = append(c.calls, "unmute")
	return nil
}

func (c *chatDouble) PurgeMessages(_ context.Context, _ uint64, conv string) (int, error) {
	c.calls = append(c.calls, "purge "+conv)
	return 3, nil
}

func (c *chatDouble) Announce(_ context.Context, conv, _ string) (uint64, error) {
	c.calls = append(c.calls, "announce "+conv)
	return 7, nil
}

func TestModerationRules(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, sqliteOnly(t), func(o *Options) { o.Now = func() time.Time { return now } })
	admin, pete := f.user("root", cp.RoleAdmin), f.user("pete", cp.RolePlayer)

	_, _, err := f.svc.Mute(ctx, admin, "pete", 60, "")
	require.ErrorIs(t, err, cp.ErrNotFound, "no chat, no moderation")
	chat := &chatDouble{}
	f.svc.SetModerator(chat)

	_, _, err = f.svc.Mute(ctx, pete, "root", 60, "")
	require.ErrorIs(t, err, cp.ErrForbidden)
	for _, secs := range []int64{0, -1, 30*24*3600 + 1, 18446744074, math.MaxInt64, math.MinInt64} {
		_, _, err = f.svc.Mute(ctx, admin, "pete", secs, "")
		require.ErrorIs(t, err, cp.ErrInvalid, "seconds %d", secs)
	}
	for _, reason := range []string{strings.Repeat("x", MaxReason+1), "\xff"} {
		_, _, err = f.svc.Mute(ctx, admin, "pete", 60, reason)
		require.ErrorIs(t, err, cp.ErrInvalid)
	}
	_, _, err = f.svc.Mute(ctx, admin, "nobody", 60, "")
	require.ErrorIs(t, err, cp.ErrNotFound)
	require.Empty(t, chat.calls, "refused input reaches chat")

	u, until, err := f.svc.Mute(ctx, admin, "pete", 30*24*3600, "spam")
	require.NoError(t, err)
	require.Equal(t, pete.ID, u.ID)
	require.Equal(t, now.Add(MaxMute), until)
	_, err = f.svc.Unmute(ctx, admin, "pete")
	require.NoError(t, err)

	require.ErrorIs(t, f.svc.DeleteMessage(ctx, admin, "lobby:main", 0), cp.ErrInvalid)
	require.ErrorIs(t, f.svc.DeleteMessage(ctx, admin, "lobby:main", math.MaxUint64), cp.ErrInvalid)
	require.ErrorIs(t, f.svc.DeleteMessage(ctx, admin, strings.Repeat("x", 81), 1), cp.ErrInvalid)
	require.NoError(t, f.svc.DeleteMessage(ctx, admin, "lobby:main", 3))

	_, err = f.svc.Announce(ctx, admin, "room:nosuchroom", "hello")
	require.ErrorIs(t, err, cp.ErrNotFound)
	_, err = f.svc.Announce(ctx, admin, "dm:1:2", "hello")
	require.ErrorIs(t, err, cp.ErrInvalid)
	_, err = f.svc.Announce(ctx, admin, "lobby:main", strings.Repeat("x", MaxAnnounce+1))
	require.ErrorIs(t, err, cp.ErrInvalid)
	roomID, _ := f.room(pete, true, "")
	seq, err := f.svc.Announce(ctx, admin, "room:"+roomID, "hello room")
	require.NoError(t, err)
	require.Equal(t, uint64(7), seq)
	_, err = f.svc.CloseRoom(ctx, pete, roomID)
	require.NoError(t, err)
	_, err = f.svc.Announce(ctx, admin, "room:"+roomID, "too late")
	require.ErrorIs(t, err, cp.ErrNotFound)

	require.Equal(t, []string{"mute " + now.Add(MaxMute).Format(time.RFC3339), "unmute", "delete lobby:main", "announce room:" + roomID}, chat.calls)
	log, err := f.svc.AuditLog(ctx, admin, 0, 10)
	require.NoError(t, err)
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Action)
	}
	require.Equal(t, []string{cp.AuditAnnounce, cp.AuditDeleteMessage, cp.AuditUnmute, cp.AuditMute}, actions)
}

package service

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
)

func TestPurgeRules(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, sqliteOnly(t))
	admin, mod := f.user("root", cp.RoleAdmin), f.user("mona", cp.RoleModerator)
	pete, _ := f.user("pete", cp.RolePlayer), f.user("milo", cp.RoleModerator)

	_, err := f.svc.PurgeMessages(ctx, mod, "pete", "")
	require.ErrorIs(t, err, cp.ErrNotFound, "no chat, no moderation")
	chat := &chatDouble{}
	f.svc.SetModerator(chat)

	for _, tc := range []struct {
		actor      cp.User
		user, conv string
		want       error
	}{
		{pete, "pete", "", cp.ErrForbidden},
		{mod, "root", "", cp.ErrForbidden},
		{mod, "milo", "", cp.ErrForbidden},
		{mod, "nobody", "", cp.ErrNotFound},
		{mod, "pete", "nowhere", cp.ErrInvalid},
		{mod, "pete", "lobby:" + string(make([]byte, 80)), cp.ErrInvalid},
	} {
		_, err := f.svc.PurgeMessages(ctx, tc.actor, tc.user, tc.conv)
		require.ErrorIs(t, err, tc.want, "%s purges %s in %q", tc.actor.Username, tc.user, tc.conv)
	}
	require.Empty(t, chat.calls, "refused purges reach no chat")

	n, err := f.svc.PurgeMessages(ctx, mod, "pete", "lobby:main")
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, err = f.svc.PurgeMessages(ctx, admin, "milo", "")
	require.NoError(t, err, "admins purge anyone")
	require.Equal(t, []string{"purge lobby:main", "purge "}, chat.calls)
	log, err := f.svc.AuditLog(ctx, mod, 0, 10)
	require.NoError(t, err)
	require.Len(t, log, 2)
	require.Equal(t, cp.AuditEntry{ID: log[1].ID, At: log[1].At, ActorID: mod.ID, Actor: "mona", Action: cp.AuditPurgeMessages, Target: "pete", Detail: "3 messages in lobby:main"}, log[1])
}

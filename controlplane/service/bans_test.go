package service

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// A temporary ban holds inside the join, create and key transactions
// while it lasts, and reconciliation treats the user's memberships as
// gone; once it has ended, none of that holds any more.
func TestTemporaryBanHoldsWhileItLasts(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			now := time.Now().UTC()
			clock := func() time.Time { return now }
			f := newFixture(t, e, func(o *Options) { o.Now = func() time.Time { return clock() } })
			admin := f.user("root", cp.RoleAdmin)
			alice, bob := f.user("alice", cp.RolePlayer), f.user("bob", cp.RolePlayer)
			roomID, _ := f.room(alice, true, "")

			for _, secs := range []int64{-1, maxBanSeconds + 1, math.MaxInt64, math.MinInt64} {
				_, _, err := f.svc.Ban(ctx, admin, "bob", secs, "")
				require.ErrorIs(t, err, cp.ErrInvalid, "seconds %d", secs)
			}
			_, _, err := f.svc.Ban(ctx, admin, "bob", 60, strings.Repeat("x", MaxReason+1))
			require.ErrorIs(t, err, cp.ErrInvalid)
			_, _, err = f.svc.Ban(ctx, bob, "alice", 60, "")
			require.ErrorIs(t, err, cp.ErrForbidden)

			target, _, err := f.svc.Ban(ctx, admin, "bob", 3600, "griefing")
			require.NoError(t, err)
			require.WithinDuration(t, now.Add(time.Hour), *target.BanUntil, time.Millisecond)
			// bob's request was authenticated before the ban.
			_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "")
			var be *cp.BanError
			require.ErrorAs(t, err, &be)
			require.ErrorIs(t, err, cp.ErrBanned)
			require.Equal(t, "griefing", be.Reason)
			require.WithinDuration(t, now.Add(time.Hour), *be.Until, time.Millisecond)
			_, _, _, err = f.svc.CreateRoom(ctx, bob, CreateRoomParams{Name: "mine", MaxPlayers: 4})
			require.ErrorIs(t, err, cp.ErrBanned)

			// A membership the ban's eviction missed (written behind the
			// service's back) is reconciled away while the ban lasts.
			require.NoError(t, f.st.Unban(ctx, bob.ID))
			_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "")
			require.NoError(t, err)
			until := now.Add(time.Hour)
			require.NoError(t, f.st.Ban(ctx, bob.ID, now, &until, "griefing"))
			banned, err := f.st.BannedMembers(ctx, "default", clock())
			require.NoError(t, err)
			require.Len(t, banned, 1)

			// An hour later it is over.
			now = now.Add(time.Hour + time.Second)
			banned, err = f.st.BannedMembers(ctx, "default", clock())
			require.NoError(t, err)
			require.Empty(t, banned)
			_, _, err = f.svc.JoinRoom(ctx, bob, roomID, "")
			require.NoError(t, err, "not banned any more")
			_, _, _, err = f.svc.CreateRoom(ctx, bob, CreateRoomParams{Name: "mine", MaxPlayers: 4})
			require.NoError(t, err)
		})
	}
}

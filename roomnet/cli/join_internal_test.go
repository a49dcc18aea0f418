package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// A player whom the web lobby already made a member (it joins through the
// API before handing over to roomnet://join/CODE) gets a fresh key from
// roomnet join, by invite or by room id; a kicked player still does not.
func TestJoinOfAMemberRenewsTheKey(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob, carol := h.User("alice"), h.User("bob"), h.User("carol")
	room, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "web handover", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	first, err := bob.JoinInvite(ctx, room.InviteCode) // the lobby page's join
	require.NoError(t, err)

	byInvite, err := joinOrRenew(ctx, bob, "", room.InviteCode, "")
	require.NoError(t, err)
	require.Equal(t, room.ID, byInvite.RoomID)
	require.NotEmpty(t, byInvite.AuthKey)
	require.NotEqual(t, first.AuthKey, byInvite.AuthKey, "a fresh single-use key")
	byID, err := joinOrRenew(ctx, bob, room.ID, "", "")
	require.NoError(t, err)
	require.NotEqual(t, byInvite.AuthKey, byID.AuthKey)

	// A newcomer simply joins.
	g, err := joinOrRenew(ctx, carol, "", room.InviteCode, "")
	require.NoError(t, err)
	require.Equal(t, room.ID, g.RoomID)

	require.NoError(t, alice.Kick(ctx, room.ID, "carol"))
	_, err = joinOrRenew(ctx, carol, "", room.InviteCode, "")
	roomnettest.RequireCode(t, err, 403, roomnet.CodeKicked)
	members, err := alice.Members(ctx, room.ID)
	require.NoError(t, err)
	require.Len(t, members, 2, "renewing added nobody twice")
}

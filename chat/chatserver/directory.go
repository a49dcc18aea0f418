package chatserver

import (
	"context"
	"errors"
)

// User is an authenticated account as chat sees it.
type User struct {
	ID    uint64
	Name  string
	Admin bool
}

// Directory is what chat needs of accounts and rooms; the control plane
// implements it. Membership changes arrive as events (Server.Apply).
type Directory interface {
	Authenticate(ctx context.Context, token string) (User, error)
	UserByName(ctx context.Context, name string) (User, error)
	// RoomsOf lists the rooms the user is an active member of.
	RoomsOf(ctx context.Context, userID uint64) ([]string, error)
}

// ErrNoUser reports an unknown user name.
var ErrNoUser = errors.New("chat: no such user")

// MembershipEvent is a room membership change, applied by Server.Apply.
type MembershipEvent struct {
	Type     string // member_joined, member_left, member_kicked, host_changed, room_closed
	RoomID   string
	UserID   uint64
	Username string
}

package chatserver

import (
	"context"
	"errors"
	"time"
)

// User is an authenticated account as chat sees it.
type User struct {
	ID    uint64
	Name  string
	Admin bool
	// Session names the login the token belongs to: the lowercase hex
	// SHA-256 of the bearer token. A session_ended event naming it closes
	// the user's connections made with that token (4012).
	Session string
	// Expires is when the token stops being valid (zero: never); its
	// connections are closed with 4012 then.
	Expires time.Time
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

// MembershipEvent is a room membership change or the end of a user's
// session or account, applied by Server.Apply.
type MembershipEvent struct {
	// Type is member_joined, member_left, member_kicked, host_changed,
	// room_closed (RoomID), user_banned (UserID) or session_ended
	// (Session, and UserID when known).
	Type     string
	RoomID   string
	UserID   uint64
	Username string
	// Session is User.Session of the login that ended (session_ended).
	Session string `json:",omitempty"`
}

// Event types Server.Apply acts on beyond room membership.
const (
	EventUserBanned   = "user_banned"
	EventSessionEnded = "session_ended"
)

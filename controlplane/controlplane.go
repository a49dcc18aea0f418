// Package controlplane holds the control plane's domain: users, rooms,
// members and join keys as stored, the events that mutations produce, and
// the errors callers branch on. It has no behaviour of its own; the store,
// service and api packages below it do the work.
package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Roles of an account, from most to least trusted. A moderator keeps
// order among players (mutes, bans, kicks, room closes, chat deletes,
// announcements, the audit log); an admin also runs the server (roles,
// relays, figures).
const (
	RoleAdmin     = "admin"
	RoleModerator = "moderator"
	RolePlayer    = "player"
)

// RoleRank orders roles: a player 0, a moderator 1, an admin 2; an unknown
// role ranks below a player.
func RoleRank(role string) int {
	switch role {
	case RoleAdmin:
		return 2
	case RoleModerator:
		return 1
	case RolePlayer:
		return 0
	}
	return -1
}

// Member states.
const (
	MemberActive = "active"
	MemberKicked = "kicked"
)

// User is an account.
type User struct {
	ID           uint64 `gorm:"primaryKey"`
	Username     string `gorm:"uniqueIndex;size:32;not null"`
	PasswordHash []byte `gorm:"not null"`
	Role         string `gorm:"size:16;not null"`
	CreatedAt    time.Time
	BannedAt     *time.Time
	// BanUntil ends a temporary ban by itself; nil: the ban is permanent.
	BanUntil  *time.Time
	BanReason string `gorm:"size:200"`
}

// IsAdmin reports whether u has the admin role.
func (u User) IsAdmin() bool { return u.Role == RoleAdmin }

// CanModerate reports whether u is a moderator or an admin.
func (u User) CanModerate() bool { return RoleRank(u.Role) >= RoleRank(RoleModerator) }

// Banned reports whether u is banned at now: banned without an end, or
// until after now. A temporary ban that ran out is no ban.
func (u User) Banned(now time.Time) bool {
	return u.BannedAt != nil && (u.BanUntil == nil || u.BanUntil.After(now))
}

// BanError is the refusal of a banned user, saying until when (nil:
// for good) and why. It is an ErrBanned and an ErrForbidden.
type BanError struct {
	Until  *time.Time
	Reason string
}

func (e *BanError) Error() string {
	s := "this account is banned"
	if e.Until != nil {
		s += " until " + e.Until.UTC().Format(time.RFC3339)
		if e.Reason != "" {
			s += " because " + e.Reason
		}
	} else if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap makes a BanError an ErrBanned, which is a kind of ErrForbidden.
func (e *BanError) Unwrap() []error { return []error{ErrBanned, ErrForbidden} }

// BanError is u's ban as an error.
func (u User) BanError() *BanError { return &BanError{Until: u.BanUntil, Reason: u.BanReason} }

// Token is a bearer token; only its SHA-256 is stored.
type Token struct {
	Hash      []byte `gorm:"primaryKey"`
	UserID    uint64 `gorm:"index;not null"`
	ExpiresAt time.Time
	CreatedAt time.Time
}

// Room is an isolated virtual LAN: one Headscale user on one shard.
type Room struct {
	ID              string `gorm:"primaryKey;size:16"`
	Name            string `gorm:"size:64;not null"`
	Game            string `gorm:"size:64;index"`
	MaxPlayers      int    `gorm:"not null"`
	Public          bool   `gorm:"index"`
	PasswordHash    []byte
	HostID          uint64 `gorm:"index;not null"`
	InviteCode      string `gorm:"uniqueIndex;size:16;not null"`
	Shard           string `gorm:"size:64;not null"`
	Ports           string `gorm:"size:200"` // comma-separated "port/proto"
	HeadscaleUserID uint64
	HeadscaleUser   string `gorm:"size:64;not null"`
	CreatedAt       time.Time
	ClosedAt        *time.Time `gorm:"index"`
}

// Open reports whether the room has not been closed.
func (r Room) Open() bool { return r.ClosedAt == nil }

// Member is a user's place in a room.
type Member struct {
	RoomID   string `gorm:"primaryKey;size:16"`
	UserID   uint64 `gorm:"primaryKey"`
	State    string `gorm:"size:16;not null"`
	JoinedAt time.Time
	User     User `gorm:"foreignKey:UserID"`
}

// JoinKey records a pre-auth key minted for one member's join, so that a
// node can be traced back to the member who registered it.
type JoinKey struct {
	Shard     string `gorm:"primaryKey;size:64"`
	KeyID     uint64 `gorm:"primaryKey"`
	RoomID    string `gorm:"index;size:16;not null"`
	UserID    uint64 `gorm:"index;not null"`
	ExpiresAt time.Time
	CreatedAt time.Time
}

// AuditEntry records one action an admin took.
type AuditEntry struct {
	ID      uint64    `gorm:"primaryKey"`
	At      time.Time `gorm:"index;not null"`
	ActorID uint64    `gorm:"index;not null"`
	Actor   string    `gorm:"size:32;not null"`
	Action  string    `gorm:"size:32;index;not null"` // e.g. kick, close_room, ban, mute
	Target  string    `gorm:"size:128"`               // a room id, a username, a conversation and seq
	Detail  string    `gorm:"size:500"`
}

// Audit actions.
const (
	AuditKick          = "kick"
	AuditCloseRoom     = "close_room"
	AuditBan           = "ban"
	AuditUnban         = "unban"
	AuditRole          = "set_role"
	AuditDeleteMessage = "delete_message"
	AuditMute          = "mute"
	AuditUnmute        = "unmute"
	AuditAnnounce      = "announce"
	AuditPurgeMessages = "purge_messages" // every text message of a user deleted
	AuditJoinPrivate   = "join_private"   // an admin joined a private room by id, without its invite
	AuditExpireNode    = "expire_node"    // an admin expired a node's key; target "shard/node id"
	AuditDeleteNode    = "delete_node"    // an admin deleted a node; target "shard/node id"
	AuditReadChat      = "read_chat"      // a moderator opened a room's chat history; target the room id
)

// EventType names a membership event.
type EventType string

// Membership events, published to chat and the admin panel.
const (
	EventRoomCreated  EventType = "room_created"
	EventMemberJoined EventType = "member_joined"
	EventMemberLeft   EventType = "member_left"
	EventMemberKicked EventType = "member_kicked"
	EventHostChanged  EventType = "host_changed"
	EventRoomClosed   EventType = "room_closed"
	// EventRoomMoved: the room's shard was lost and the room now lives on
	// another; members need a fresh key (their nodes start over there).
	EventRoomMoved  EventType = "room_moved"
	EventUserBanned EventType = "user_banned" // every session of the user ends
	// EventSessionEnded: a token was revoked (logout); what it opened
	// (chat sessions, the admin event stream) ends. Session names it.
	EventSessionEnded EventType = "session_ended"
)

// Event is what a mutation changed.
type Event struct {
	Type     EventType
	RoomID   string
	UserID   uint64
	Username string
	ActorID  uint64
	At       time.Time
	// Session is the SessionID of the token a session_ended event ends.
	Session string
}

// SessionID names the session of a bearer token in events and logs
// without revealing the token: the lowercase hex SHA-256 of the token,
// which is the stored Token.Hash hex-encoded.
func SessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Errors callers branch on; the API maps each to a status and code.
var (
	ErrInvalid        = errors.New("invalid input")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrForbidden      = errors.New("forbidden")
	ErrNotFound       = errors.New("not found")
	ErrUsernameTaken  = errors.New("username taken")
	ErrRoomFull       = errors.New("room full")
	ErrAlreadyMember  = errors.New("already a member")
	ErrNotMember      = errors.New("not a member")
	ErrRoomClosed     = errors.New("room closed")
	ErrWrongPassword  = errors.New("wrong room password")
	ErrKicked         = errors.New("kicked from this room")
	ErrTooManyRooms   = errors.New("too many open rooms")
	ErrUnavailable    = errors.New("coordination server unavailable")
	ErrCapacity       = errors.New("no capacity for new rooms")
	ErrSignupDisabled = errors.New("signup disabled")
	// ErrBanned refuses a banned user; a *BanError says until when and why.
	ErrBanned = errors.New("banned")
)

// Invalid returns an ErrInvalid error with a message for the client.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

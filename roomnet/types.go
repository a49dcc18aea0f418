// Package roomnet is the Go SDK of roomnet: the REST API's wire types and
// a client for them. The CLI, launchers and tests use it; the server
// imports its types so that both sides share one definition. It never
// imports server packages.
package roomnet

import "time"

// APIVersionPrefix is the path prefix of the REST API.
const APIVersionPrefix = "/api/v1"

// Credentials registers or logs in an account.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// User is an account as the API shows it.
type User struct {
	ID        uint64    `json:"id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	Banned    bool      `json:"banned,omitempty"`
}

// LoginResponse carries a bearer token.
type LoginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
}

// UserList is a page of users.
type UserList struct {
	Users []User `json:"users"`
	Next  uint64 `json:"next,omitempty"` // pass as ?after= for the next page
}

// CreateRoom asks for a new room.
type CreateRoom struct {
	Name       string `json:"name"`
	Game       string `json:"game"`
	MaxPlayers int    `json:"max_players"`
	Public     bool   `json:"public"`
	Password   string `json:"password,omitempty"`
	// Ports are the host's game ports ("27015/udp", "25565/tcp") that
	// players' clients forward to the host.
	Ports []string `json:"ports,omitempty"`
}

// Room is a room as the API shows it. InviteCode is shown to members only.
type Room struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Game        string     `json:"game"`
	MaxPlayers  int        `json:"max_players"`
	Public      bool       `json:"public"`
	HasPassword bool       `json:"has_password"`
	Ports       []string   `json:"ports,omitempty"`
	Host        string     `json:"host"`
	Members     int        `json:"members"`
	InviteCode  string     `json:"invite_code,omitempty"`
	InviteLink  string     `json:"invite_link,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ClosedAt    *time.Time `json:"closed_at,omitempty"`
}

// RoomList is the list of public rooms.
type RoomList struct {
	Rooms []Room `json:"rooms"`
}

// CreateRoomResponse is the new room and the host's join grant.
type CreateRoomResponse struct {
	Room
	Join JoinGrant `json:"join"`
}

// JoinRoom carries a room password where one is set.
type JoinRoom struct {
	Password string `json:"password,omitempty"`
}

// JoinGrant is what a node needs to enter a room's network:
// `tailscale up --login-server <login_server> --authkey <auth_key>`, or a
// tsnet node with ControlURL and AuthKey. The key is single-use, ephemeral
// and expires at ExpiresAt.
type JoinGrant struct {
	RoomID      string    `json:"room_id"`
	LoginServer string    `json:"login_server"`
	AuthKey     string    `json:"auth_key"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Kick names the member to remove.
type Kick struct {
	Username string `json:"username"`
}

// Invite is a room's invite code and link.
type Invite struct {
	Code string `json:"invite_code"`
	Link string `json:"invite_link"`
}

// Node is a member's WireGuard node.
type Node struct {
	ID       uint64    `json:"id"`
	Name     string    `json:"name"`
	IPs      []string  `json:"ips"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// Member is a room member with their nodes.
type Member struct {
	Username string    `json:"username"`
	Host     bool      `json:"host"`
	JoinedAt time.Time `json:"joined_at"`
	Nodes    []Node    `json:"nodes"`
}

// MemberList lists a room's members.
type MemberList struct {
	Members []Member `json:"members"`
}

// Error codes the API returns; a client branches on these, not on text.
const (
	CodeBadRequest     = "bad_request"
	CodeInvalidJSON    = "invalid_json"
	CodeBodyTooLarge   = "body_too_large"
	CodeUnauthorized   = "unauthorized"
	CodeForbidden      = "forbidden"
	CodeNotFound       = "not_found"
	CodeUsernameTaken  = "username_taken"
	CodeRoomFull       = "room_full"
	CodeAlreadyMember  = "already_member"
	CodeNotMember      = "not_member"
	CodeRoomClosed     = "room_closed"
	CodeWrongPassword  = "wrong_password"
	CodeKicked         = "kicked"
	CodeTooManyRooms   = "too_many_rooms"
	CodeRateLimited    = "rate_limited"
	CodeUnavailable    = "unavailable"
	CodeSignupDisabled = "signup_disabled"
	CodeInternal       = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a stable code and a message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// RelayNode describes one DERP relay node as it registers.
type RelayNode struct {
	Name     string `json:"name"`
	HostName string `json:"hostname"`
	IPv4     string `json:"ipv4,omitempty"`
	IPv6     string `json:"ipv6,omitempty"`
	DERPPort int    `json:"derp_port"`
	STUNPort int    `json:"stun_port"`
	// Insecure marks a self-signed certificate: local development only.
	Insecure bool `json:"insecure,omitempty"`
}

// RelayHeartbeat registers a relay node and keeps it in the DERP map.
type RelayHeartbeat struct {
	RegionID   int       `json:"region_id"`
	RegionCode string    `json:"region_code"`
	RegionName string    `json:"region_name"`
	Node       RelayNode `json:"node"`
}

// Relay is a registered relay as admins see it.
type Relay struct {
	RelayHeartbeat
	LastSeen time.Time `json:"last_seen"`
	Embedded bool      `json:"embedded"`
}

// RelayList lists relays.
type RelayList struct {
	Relays []Relay `json:"relays"`
}

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
	// BanUntil and BanReason, in admin listings of a banned user: when
	// the ban ends (absent: never) and why.
	BanUntil  *time.Time `json:"ban_until,omitempty"`
	BanReason string     `json:"ban_reason,omitempty"`
	// MutedUntil, in admin listings, is when the user's chat mute ends.
	MutedUntil *time.Time `json:"muted_until,omitempty"`
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
	// Shard names the Headscale shard the room lives on. It changes when
	// the room moves off a lost shard: members then need a fresh key
	// (POST /rooms/{id}/key) and a fresh node.
	Shard string `json:"shard,omitempty"`
}

// RoomList is a list of rooms.
type RoomList struct {
	Rooms []Room `json:"rooms"`
	// Next, in admin listings, is the room id to pass as ?before= for
	// the next (older) page.
	Next string `json:"next,omitempty"`
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
	// Links is how this member's node reaches the others, as its client
	// last reported (at ReportedAt); absent without a fresh report.
	Links      []Link     `json:"links,omitempty"`
	ReportedAt *time.Time `json:"reported_at,omitempty"`
	// PathSource says where Links come from: "client" (the member's
	// roomnet CLI reported them) or "server" (the control plane inferred
	// them from Headscale and its relay); empty without links.
	PathSource string `json:"path_source,omitempty"`
}

// Link is how a member's node reaches one peer.
type Link struct {
	Peer   string `json:"peer"`            // the peer's username
	IP     string `json:"ip"`              // the peer's room address
	Direct bool   `json:"direct"`          // false: through a relay
	Addr   string `json:"addr,omitempty"`  // direct: the peer's endpoint; peer relay: the relay's
	Relay  string `json:"relay,omitempty"` // relayed by DERP: the region
	// PeerRelay: relayed by a roommate's peer relay (tailscale's UDP
	// relay), not by DERP; Addr is then the relay's "ip:port:vni:N".
	PeerRelay bool    `json:"peer_relay,omitempty"`
	RTTMS     float64 `json:"rtt_ms,omitempty"` // round trip; 0: not measured
	// Inferred: a server-side guess (direct because our relay carried
	// nothing between the two), not a measurement.
	Inferred bool `json:"inferred,omitempty"`
}

// PathReport is what a member's client reports of its links.
type PathReport struct {
	Links []Link `json:"links"`
}

// Session is the browser session of a signed-in user: the user and the
// token that must accompany every state-changing request in the
// X-CSRF-Token header. The session itself is an HttpOnly cookie.
type Session struct {
	User      User      `json:"user"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SetRole changes a user's role ("admin" or "player").
type SetRole struct {
	Role string `json:"role"`
}

// Ban bars a user: for Seconds (1 to a year's worth), or for good
// without; Reason is shown to the user.
type Ban struct {
	Seconds int64  `json:"seconds,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Mute silences a user in chat for a while.
type Mute struct {
	Seconds int    `json:"seconds"` // 1 to 30 days' worth
	Reason  string `json:"reason,omitempty"`
}

// MuteState is a user's mute.
type MuteState struct {
	Username string     `json:"username"`
	Until    *time.Time `json:"until,omitempty"` // nil: not muted
}

// DeleteMessage names a chat message to delete.
type DeleteMessage struct {
	Conv string `json:"conv"`
	Seq  uint64 `json:"seq"`
}

// UserProfile is a user as moderators and admins see them: the account
// (with its ban and mute), its ban and mute with their reasons, the rooms
// they are and were in, and the audit log about them, newest first.
type UserProfile struct {
	User    User          `json:"user"`
	Ban     *BanInfo      `json:"ban,omitempty"`  // absent: not banned
	Mute    *MuteInfo     `json:"mute,omitempty"` // absent: not muted
	Rooms   []ProfileRoom `json:"rooms"`
	History []AuditEntry  `json:"history"`
}

// BanInfo is a ban that lasts: since when, until when (absent: for good)
// and why.
type BanInfo struct {
	At     time.Time  `json:"at"`
	Until  *time.Time `json:"until,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// MuteInfo is a chat mute that lasts.
type MuteInfo struct {
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
}

// ProfileRoom is a room in a profile. Current: the user is an active
// member of the open room. State is the membership's (active, kicked),
// absent when the user left.
type ProfileRoom struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Game      string     `json:"game"`
	Host      string     `json:"host"`
	Members   int        `json:"members"`
	CreatedAt time.Time  `json:"created_at"`
	ClosedAt  *time.Time `json:"closed_at,omitempty"`
	Current   bool       `json:"current"`
	State     string     `json:"state,omitempty"`
	JoinedAt  *time.Time `json:"joined_at,omitempty"`
}

// PurgeMessages deletes every text message of a user, in Conv only when
// it is set.
type PurgeMessages struct {
	Conv string `json:"conv,omitempty"`
}

// Purged says how many messages a purge deleted.
type Purged struct {
	Username string `json:"username"`
	Purged   int    `json:"purged"`
}

// Announce posts a moderator notice to a lobby or room conversation.
type Announce struct {
	Conv string `json:"conv"`
	Text string `json:"text"`
}

// AuditEntry is one admin action.
type AuditEntry struct {
	ID     uint64    `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// AuditList is a page of the audit log, newest first.
type AuditList struct {
	Entries []AuditEntry `json:"entries"`
	Next    uint64       `json:"next,omitempty"` // pass as ?before= for older entries
}

// Figures are the live numbers of the admin dashboard.
type Figures struct {
	At            time.Time `json:"at"`
	RoomsOpen     int       `json:"rooms_open"`
	MembersActive int       `json:"members_active"`
	PlayersOnline int       `json:"players_online"` // users connected to chat
	RelaysUp      int       `json:"relays_up"`
	MessagesPerS  float64   `json:"messages_per_sec"`
	JoinsPerMin   float64   `json:"joins_per_min"`
}

// Overview is the dashboard: the figures now and their recent history,
// oldest first.
type Overview struct {
	Now    Figures   `json:"now"`
	Series []Figures `json:"series"`
	// StepSeconds is how far apart the points of Series are.
	StepSeconds float64 `json:"step_seconds"`
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
	CodeBanned         = "banned" // the error says until when and why
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
	CodeCapacity       = "capacity" // no Headscale shard takes new rooms now
	CodeSignupDisabled = "signup_disabled"
	CodeCSRF           = "csrf_failed"
	CodeInternal       = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a stable code and a message for people. A banned
// user's refusal (code banned) says until when (absent: for good) and
// why.
type ErrorDetail struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Until   *time.Time `json:"until,omitempty"`
	Reason  string     `json:"reason,omitempty"`
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
	// STUNOnly marks a node that only answers STUN (a relay's second
	// STUN port): no DERP on it.
	STUNOnly bool `json:"stun_only,omitempty"`
}

// RelayHeartbeat registers a relay node and keeps it in the DERP map.
type RelayHeartbeat struct {
	RegionID   int       `json:"region_id"`
	RegionCode string    `json:"region_code"`
	RegionName string    `json:"region_name"`
	Node       RelayNode `json:"node"`
	// Stats are the relay's counters when it sent the heartbeat.
	Stats *RelayStats `json:"stats,omitempty"`
}

// RelayStats are a relay's live counters.
type RelayStats struct {
	Clients       int     `json:"clients"`
	BytesReceived float64 `json:"bytes_received"`
	BytesSent     float64 `json:"bytes_sent"`
}

// Relay is a registered relay as admins see it.
type Relay struct {
	RelayHeartbeat
	LastSeen time.Time `json:"last_seen"`
	Embedded bool      `json:"embedded"`
	Healthy  bool      `json:"healthy"` // heard from within its TTL (the embedded one: running)
	// BytesPerSec is the relayed throughput since the previous heartbeat.
	BytesPerSec float64 `json:"bytes_per_sec,omitempty"`
}

// RelayList lists relays.
type RelayList struct {
	Relays []Relay `json:"relays"`
}

// ShardProcess is an embedded shard's child process.
type ShardProcess struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"` // user + system since it started
	RSSBytes   int64   `json:"rss_bytes"`
	Restarts   int64   `json:"restarts"` // after crashes
}

// Shard is a Headscale shard as admins see it.
type Shard struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"` // "embedded" or "external"
	Version string `json:"version,omitempty"`
	Healthy bool   `json:"healthy"`
	// Quarantined: back after a loss and not reconciled yet; it takes
	// no new rooms until it is.
	Quarantined bool `json:"quarantined"`
	// Lost: down past the grace period; its rooms move to healthy
	// shards. DownSince: when its current run of failed checks began
	// (absent while it answers).
	Lost      bool       `json:"lost"`
	DownSince *time.Time `json:"down_since,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"` // nil: not checked yet
	Rooms     int        `json:"rooms"`                // open rooms on it
	Nodes     int        `json:"nodes"`                // registered nodes at the last check
	Online    int        `json:"online"`               // of which online
	Grants    int        `json:"grants"`               // join keys minted since the last check
	NodeCap   int        `json:"node_cap"`             // it takes no new rooms at nodes+grants ≥ node_cap
	// Process is set for embedded shards whose child runs.
	Process *ShardProcess `json:"process,omitempty"`
}

// ShardNode is one node of a Headscale shard as admins see it (GET
// /admin/nodes).
type ShardNode struct {
	Shard     string     `json:"shard"`
	ID        uint64     `json:"id"`
	Name      string     `json:"name"`     // Headscale's given name
	Hostname  string     `json:"hostname"` // what the node calls itself
	IPs       []string   `json:"ips"`
	Online    bool       `json:"online"`
	LastSeen  *time.Time `json:"last_seen,omitempty"`
	Expiry    *time.Time `json:"expiry,omitempty"` // absent: the key does not expire
	Expired   bool       `json:"expired"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	// HeadscaleUser is the Headscale user the node is registered to;
	// RoomID and RoomName the room it maps onto (absent: none of ours),
	// RoomOpen whether that room is open.
	HeadscaleUser string `json:"headscale_user"`
	RoomID        string `json:"room_id,omitempty"`
	RoomName      string `json:"room_name,omitempty"`
	RoomOpen      bool   `json:"room_open"`
	// Username is the member whose join key registered the node.
	Username string `json:"username,omitempty"`
	// RelaySource is the address a relay of ours saw the node connect
	// from, at RelaySourceAt; Endpoints the direct endpoints its
	// roommates report reaching it at.
	RelaySource   string     `json:"relay_source,omitempty"`
	RelaySourceAt *time.Time `json:"relay_source_at,omitempty"`
	Endpoints     []string   `json:"endpoints"`
	// ClientVersion is the node's Tailscale client version when known;
	// Headscale v0.29.3's API does not tell it, so it is absent today.
	ClientVersion string `json:"client_version,omitempty"`
}

// ShardNodesError says that a shard's nodes could not be listed.
type ShardNodesError struct {
	Shard string `json:"shard"`
	Error string `json:"error"`
}

// NodeList lists the nodes of every shard that answered.
type NodeList struct {
	Nodes []ShardNode `json:"nodes"`
	// Unavailable lists the shards that did not answer.
	Unavailable []ShardNodesError `json:"unavailable"`
}

// ChatHistory is a page of a conversation's stored messages (GET
// /admin/chat/history).
type ChatHistory struct {
	Conv     string `json:"conv"`
	RoomName string `json:"room_name,omitempty"`
	// Messages: newest first when paging back, oldest first when
	// following with after.
	Messages []ChatHistoryMessage `json:"messages"`
	// Next: the before of the next older page (0: no older messages), or
	// with after, the after to follow with.
	Next uint64 `json:"next"`
}

// ChatHistoryMessage is one stored message: kind text, system, deleted
// (a moderator deleted it; no body) or tombstone (a sequence number that
// was never written).
type ChatHistoryMessage struct {
	Seq      uint64    `json:"seq"`
	Kind     string    `json:"kind"`
	SenderID uint64    `json:"sender_id,omitempty"`
	Sender   string    `json:"sender,omitempty"`
	Body     string    `json:"body,omitempty"`
	At       time.Time `json:"at"`
}

// ShardList lists shards.
type ShardList struct {
	Shards []Shard `json:"shards"`
}

package roomnet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is an API error: the HTTP status and the stable code; for a ban
// (CodeBanned), until when (nil: for good) and why.
type Error struct {
	Status  int
	Code    string
	Message string
	Until   *time.Time
	Reason  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("roomnet: %s (%d): %s", e.Code, e.Status, e.Message)
}

// Client calls a roomnet server's REST API. Safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the server at baseURL (no trailing path).
func NewClient(baseURL string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Timeout: 30 * time.Second}}
}

// WithToken returns a copy of c that authenticates with token.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// WithHTTPClient returns a copy of c that sends its requests with hc.
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	cc := *c
	cc.http = hc
	return &cc
}

// Token returns the bearer token in use.
func (c *Client) Token() string { return c.token }

// BaseURL returns the server URL.
func (c *Client) BaseURL() string { return c.base }

// Do sends a request with a JSON body (nil for none) and decodes the JSON
// answer into out (nil to discard). Non-2xx answers become *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Until: eb.Error.Until, Reason: eb.Error.Reason}
		}
		return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: strings.TrimSpace(string(data))}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding response: %w", err)
		}
	}
	return nil
}

// Register creates an account.
func (c *Client) Register(ctx context.Context, username, password string) (User, error) {
	var u User
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/auth/register", Credentials{username, password}, &u)
	return u, err
}

// Login returns a client authenticated as username.
func (c *Client) Login(ctx context.Context, username, password string) (*Client, LoginResponse, error) {
	var r LoginResponse
	if err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/auth/login", Credentials{username, password}, &r); err != nil {
		return nil, r, err
	}
	return c.WithToken(r.Token), r, nil
}

// Logout revokes the client's token.
func (c *Client) Logout(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/auth/logout", nil, nil)
}

// Me returns the signed-in user.
func (c *Client) Me(ctx context.Context) (User, error) {
	var u User
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/me", nil, &u)
	return u, err
}

// Users lists accounts (admins only), a page after the cursor.
func (c *Client) Users(ctx context.Context, after uint64) (UserList, error) {
	var l UserList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/users?after="+strconv.FormatUint(after, 10), nil, &l)
	return l, err
}

// CreateRoom creates a room; the answer includes the host's join grant.
func (c *Client) CreateRoom(ctx context.Context, r CreateRoom) (CreateRoomResponse, error) {
	var out CreateRoomResponse
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms", r, &out)
	return out, err
}

// Rooms lists public rooms, of one game when game is not empty.
func (c *Client) Rooms(ctx context.Context, game string) ([]Room, error) {
	var l RoomList
	path := APIVersionPrefix + "/rooms"
	if game != "" {
		path += "?game=" + url.QueryEscape(game)
	}
	err := c.Do(ctx, http.MethodGet, path, nil, &l)
	return l.Rooms, err
}

// Room returns one room.
func (c *Client) Room(ctx context.Context, id string) (Room, error) {
	var r Room
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/rooms/"+url.PathEscape(id), nil, &r)
	return r, err
}

// Join joins a public room by id.
func (c *Client) Join(ctx context.Context, roomID, password string) (JoinGrant, error) {
	var g JoinGrant
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/join", JoinRoom{Password: password}, &g)
	return g, err
}

// JoinInvite joins the room of an invite code.
func (c *Client) JoinInvite(ctx context.Context, code string) (JoinGrant, error) {
	var g JoinGrant
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/invites/"+url.PathEscape(code)+"/join", nil, &g)
	return g, err
}

// Invite previews the room of an invite code.
func (c *Client) Invite(ctx context.Context, code string) (Room, error) {
	var r Room
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/invites/"+url.PathEscape(code), nil, &r)
	return r, err
}

// RenewKey mints a fresh join key for a member whose node must rejoin.
func (c *Client) RenewKey(ctx context.Context, roomID string) (JoinGrant, error) {
	var g JoinGrant
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/key", nil, &g)
	return g, err
}

// Leave leaves a room; the caller's nodes are removed at once.
func (c *Client) Leave(ctx context.Context, roomID string) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/leave", nil, nil)
}

// Kick removes a member (host or admin).
func (c *Client) Kick(ctx context.Context, roomID, username string) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/kick", Kick{Username: username}, nil)
}

// CloseRoom closes a room (host or admin).
func (c *Client) CloseRoom(ctx context.Context, roomID string) error {
	return c.Do(ctx, http.MethodDelete, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID), nil, nil)
}

// RotateInvite replaces a room's invite code (host or admin).
func (c *Client) RotateInvite(ctx context.Context, roomID string) (Invite, error) {
	var i Invite
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/invite", nil, &i)
	return i, err
}

// Members lists a room's members with their nodes (members and admins).
func (c *Client) Members(ctx context.Context, roomID string) ([]Member, error) {
	var l MemberList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/members", nil, &l)
	return l.Members, err
}

// RelayHeartbeat registers a relay with the control plane; the client's
// token must be the relay token, not a user's.
func (c *Client) RelayHeartbeat(ctx context.Context, hb RelayHeartbeat) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/relays/heartbeat", hb, nil)
}

// Relays lists the relays in the DERP map (admins only).
func (c *Client) Relays(ctx context.Context) ([]Relay, error) {
	var l RelayList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/relays", nil, &l)
	return l.Relays, err
}

// Ban bars a user: tokens revoked, rooms left, chat ended (admins only).
func (c *Client) Ban(ctx context.Context, username string) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/users/"+url.PathEscape(username)+"/ban", nil, nil)
}

// BanFor bars a user with a reason they are shown, for b.Seconds or,
// without, for good.
func (c *Client) BanFor(ctx context.Context, username string, b Ban) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/users/"+url.PathEscape(username)+"/ban", b, nil)
}

// Profile returns a user's profile (moderators and admins).
func (c *Client) Profile(ctx context.Context, username string) (UserProfile, error) {
	var p UserProfile
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/admin/users/"+url.PathEscape(username), nil, &p)
	return p, err
}

// PurgeMessages deletes every text message of a user (in conv when it is
// not empty); moderators and admins.
func (c *Client) PurgeMessages(ctx context.Context, username, conv string) (Purged, error) {
	var p Purged
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/admin/users/"+url.PathEscape(username)+"/purge-messages", PurgeMessages{Conv: conv}, &p)
	return p, err
}

// Unban lifts a ban (admins only).
func (c *Client) Unban(ctx context.Context, username string) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/users/"+url.PathEscape(username)+"/unban", nil, nil)
}

// MyRooms lists the open rooms the user is in, with their invites.
func (c *Client) MyRooms(ctx context.Context) ([]Room, error) {
	var l RoomList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/me/rooms", nil, &l)
	return l.Rooms, err
}

// ReportPaths tells the control plane how this member's node reaches the
// room's other members (shown in the members list; endpoints to admins).
func (c *Client) ReportPaths(ctx context.Context, roomID string, links []Link) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/rooms/"+url.PathEscape(roomID)+"/paths", PathReport{Links: links}, nil)
}

// SearchUsers lists accounts whose name starts with prefix (admins only).
func (c *Client) SearchUsers(ctx context.Context, prefix string) (UserList, error) {
	var l UserList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/users?q="+url.QueryEscape(prefix), nil, &l)
	return l, err
}

// SetRole makes a user an admin or a player (admins only).
func (c *Client) SetRole(ctx context.Context, username, role string) (User, error) {
	var u User
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/admin/users/"+url.PathEscape(username)+"/role", SetRole{Role: role}, &u)
	return u, err
}

// Mute silences a user in chat for d (admins only).
func (c *Client) Mute(ctx context.Context, username string, d time.Duration, reason string) (MuteState, error) {
	var st MuteState
	err := c.Do(ctx, http.MethodPost, APIVersionPrefix+"/admin/users/"+url.PathEscape(username)+"/mute", Mute{Seconds: int(d.Seconds()), Reason: reason}, &st)
	return st, err
}

// Unmute lifts a user's chat mute (admins only).
func (c *Client) Unmute(ctx context.Context, username string) error {
	return c.Do(ctx, http.MethodDelete, APIVersionPrefix+"/admin/users/"+url.PathEscape(username)+"/mute", nil, nil)
}

// DeleteMessage deletes a chat message for everyone (admins only).
func (c *Client) DeleteMessage(ctx context.Context, conv string, seq uint64) error {
	return c.Do(ctx, http.MethodPost, APIVersionPrefix+"/admin/chat/delete", DeleteMessage{Conv: conv, Seq: seq}, nil)
}

// Audit pages the audit log backwards from before (0: the newest; admins only).
func (c *Client) Audit(ctx context.Context, before uint64) (AuditList, error) {
	var l AuditList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/admin/audit?before="+strconv.FormatUint(before, 10), nil, &l)
	return l, err
}

// AdminRooms lists rooms of every visibility (admins only); query holds
// q, game, state (open, closed, all) and before.
func (c *Client) AdminRooms(ctx context.Context, query url.Values) (RoomList, error) {
	var l RoomList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/admin/rooms?"+query.Encode(), nil, &l)
	return l, err
}

// Shards lists the Headscale shards with their health and load (admins only).
func (c *Client) Shards(ctx context.Context) ([]Shard, error) {
	var l ShardList
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/admin/shards", nil, &l)
	return l.Shards, err
}

// Overview returns the admin dashboard's figures (admins only).
func (c *Client) Overview(ctx context.Context) (Overview, error) {
	var o Overview
	err := c.Do(ctx, http.MethodGet, APIVersionPrefix+"/admin/overview", nil, &o)
	return o, err
}

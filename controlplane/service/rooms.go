package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
	"github.com/roomnet/roomnet/controlplane/store"
)

// CreateRoomParams is what a host asks for.
type CreateRoomParams struct {
	Name       string
	Game       string
	MaxPlayers int
	Public     bool
	Password   string
	Ports      []string
}

// Grant is what a member needs to bring a node into a room.
type Grant struct {
	RoomID      string
	LoginServer string
	AuthKey     string // secret: single use, ephemeral, short-lived
	ExpiresAt   time.Time
}

// MemberView is a member with their nodes.
type MemberView struct {
	cp.Member
	Host  bool
	Nodes []headscale.Node
	Paths *PathReport // how this member's node reaches the others (endpoints for admins only); nil: neither reported nor inferred
}

func validText(field, v string, min, max int) error {
	n := utf8.RuneCountInString(v)
	if !utf8.ValidString(v) || n < min || n > max {
		return cp.Invalid("%s: %d to %d characters", field, min, max)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return cp.Invalid("%s: only printable characters", field)
		}
	}
	return nil
}

func (s *Service) validateRoom(p *CreateRoomParams) error {
	p.Name = strings.TrimSpace(p.Name)
	p.Game = strings.TrimSpace(p.Game)
	if err := validText("name", p.Name, 1, 64); err != nil {
		return err
	}
	if err := validText("game", p.Game, 0, 64); err != nil {
		return err
	}
	if p.MaxPlayers < 2 || p.MaxPlayers > s.opts.MaxPlayers {
		return cp.Invalid("max_players: 2 to %d", s.opts.MaxPlayers)
	}
	if err := validateRoomPassword(p.Password); err != nil {
		return err
	}
	if len(p.Ports) > 16 {
		return cp.Invalid("ports: at most 16")
	}
	seen := map[string]bool{}
	for _, port := range p.Ports {
		if !ValidPort(port) || seen[port] {
			return cp.Invalid("ports: want distinct port/proto like 27015/udp or 25565/tcp, got %q", port)
		}
		seen[port] = true
	}
	return nil
}

// ValidPort reports whether s is "port/tcp" or "port/udp" with port 1..65535.
func ValidPort(s string) bool {
	num, proto, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") || len(num) == 0 || len(num) > 5 {
		return false
	}
	n := 0
	for _, r := range num {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + int(r-'0')
	}
	return n >= 1 && n <= 65535 && num[0] != '0'
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %v", cp.ErrUnavailable, err)
}

// hiddenFrom reports whether a private room must not exist for actor: not
// a moderator or admin and no membership (active or kicked) of it.
func hiddenFrom(room cp.Room, actor cp.User, memberErr error) bool {
	return !room.Public && !actor.CanModerate() && errors.Is(memberErr, cp.ErrNotFound)
}

// CreateRoom creates a room hosted by actor and returns the host's join grant.
func (s *Service) CreateRoom(ctx context.Context, actor cp.User, p CreateRoomParams) (store.RoomSummary, Grant, []cp.Event, error) {
	if err := s.validateRoom(&p); err != nil {
		return store.RoomSummary{}, Grant{}, nil, err
	}
	var pwHash []byte
	if p.Password != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(p.Password), bcryptCost)
		if err != nil {
			return store.RoomSummary{}, Grant{}, nil, fmt.Errorf("hashing room password: %w", err)
		}
		pwHash = h
	}
	sh, err := s.pickShard(ctx)
	if err != nil {
		return store.RoomSummary{}, Grant{}, nil, err
	}
	id := NewRoomID()
	// The room is listed once its row commits; its events go out first.
	defer s.lock(id)()
	// Headscale first: a crash after this step leaves a user that no open
	// room accounts for, which reconciliation removes.
	hsUser, err := sh.Client.CreateUser(ctx, RoomUserPrefix+id)
	if err != nil {
		return store.RoomSummary{}, Grant{}, nil, unavailable(err)
	}
	now := s.now()
	room := cp.Room{
		ID: id, Name: p.Name, Game: p.Game, MaxPlayers: p.MaxPlayers, Public: p.Public,
		PasswordHash: pwHash, HostID: actor.ID, InviteCode: NewInviteCode(), Shard: sh.Name, Ports: strings.Join(p.Ports, ","),
		HeadscaleUserID: hsUser.ID, HeadscaleUser: hsUser.Name, CreatedAt: now,
	}
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		// The user's row lock serializes their room creations (the count
		// below) and orders them against a ban.
		u, err := tx.LockUser(actor.ID)
		if err != nil {
			return err
		}
		if u.Banned(s.now()) {
			return u.BanError()
		}
		n, err := tx.CountOpenRoomsHostedBy(actor.ID)
		if err != nil {
			return err
		}
		if n >= int64(s.opts.MaxRoomsPerUser) {
			return cp.ErrTooManyRooms
		}
		if err := tx.CreateRoom(&room); err != nil {
			return fmt.Errorf("creating room: %w", err)
		}
		return tx.SaveMember(&cp.Member{RoomID: id, UserID: actor.ID, State: cp.MemberActive, JoinedAt: now})
	})
	if err != nil {
		if derr := sh.Client.DeleteUser(context.WithoutCancel(ctx), hsUser.ID); derr != nil {
			s.log.Warn("removing headscale user of a room that was not created; reconciliation will", "room", id, "err", derr)
		}
		return store.RoomSummary{}, Grant{}, nil, err
	}
	grant, err := s.mint(ctx, sh, room, actor.ID)
	if err != nil {
		// A room whose host has no key is a half-state: close it, so it
		// does not count toward the host's limit.
		if cerr := s.abandon(ctx, room); cerr != nil {
			s.log.Warn("closing a room whose host got no key; reconciliation will", "room", id, "err", cerr)
		}
		return store.RoomSummary{}, Grant{}, nil, err
	}
	events := []cp.Event{
		{Type: cp.EventRoomCreated, RoomID: id, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now},
		{Type: cp.EventMemberJoined, RoomID: id, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now},
	}
	s.publish(ctx, events)
	return store.RoomSummary{Room: room, Members: 1, HostName: actor.Username}, grant, events, nil
}

// abandon closes a room that was never announced (its host got no key)
// and removes its Headscale user; the caller holds the room's lock.
func (s *Service) abandon(ctx context.Context, room cp.Room) error {
	ctx = context.WithoutCancel(ctx)
	now := s.now()
	err := s.store.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.RoomForUpdate(room.ID)
		if err != nil || !r.Open() {
			return err
		}
		r.ClosedAt = &now
		return tx.SaveRoom(&r)
	})
	if err != nil {
		return err
	}
	room.ClosedAt = &now
	s.paths.forget(room.ID, 0)
	return s.teardown(ctx, room)
}

// mint creates a single-use, ephemeral, short-lived key for one member and
// records it so that the node it registers can be traced to the member.
// The record is written under the room's and the user's row locks after
// checking again that the room is open, the member active and the user not
// banned: a kick or ban that commits first sees no key to cut and refuses
// this one; one that commits later finds the key recorded and cuts it.
func (s *Service) mint(ctx context.Context, sh Shard, room cp.Room, userID uint64) (Grant, error) {
	key, err := sh.Client.CreatePreAuthKey(ctx, room.HeadscaleUserID, true, s.opts.JoinKeyTTL)
	if err != nil {
		return Grant{}, unavailable(err)
	}
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.RoomForUpdate(room.ID)
		if err != nil {
			return err
		}
		if !r.Open() {
			return cp.ErrRoomClosed
		}
		u, err := tx.LockUser(userID)
		if err != nil {
			return err
		}
		if u.Banned(s.now()) {
			return u.BanError()
		}
		m, err := tx.Member(room.ID, userID)
		if errors.Is(err, cp.ErrNotFound) {
			return cp.ErrNotMember
		} else if err != nil {
			return err
		}
		if m.State == cp.MemberKicked {
			return cp.ErrKicked
		}
		return tx.CreateJoinKey(&cp.JoinKey{Shard: sh.Name, KeyID: key.ID, RoomID: room.ID, UserID: userID, ExpiresAt: key.Expiration, CreatedAt: s.now()})
	})
	if err != nil {
		// Unrecorded keys are never handed out; remove it now or in reconciliation.
		_ = sh.Client.DeletePreAuthKey(context.WithoutCancel(ctx), key.ID)
		return Grant{}, fmt.Errorf("recording join key: %w", err)
	}
	s.noteGrant(sh.Name)
	return Grant{RoomID: room.ID, LoginServer: sh.LoginServer, AuthKey: key.Key, ExpiresAt: key.Expiration}, nil
}

// JoinRoom adds actor to a room by id. Private rooms need their invite
// code, except for admins, whose joins by id are audited. An active member
// whose node is not online gets a fresh key (a retried join); one whose
// node is online gets cp.ErrAlreadyMember.
func (s *Service) JoinRoom(ctx context.Context, actor cp.User, roomID, password string) (Grant, []cp.Event, error) {
	return s.join(ctx, actor, roomID, password, false)
}

// JoinByInvite adds actor to the room of an invite code; the code stands
// in for the room password.
func (s *Service) JoinByInvite(ctx context.Context, actor cp.User, code string) (Grant, []cp.Event, error) {
	room, err := s.store.RoomByInvite(ctx, strings.ToUpper(strings.TrimSpace(code)))
	if err != nil {
		return Grant{}, nil, err
	}
	return s.join(ctx, actor, room.ID, "", true)
}

func (s *Service) join(ctx context.Context, actor cp.User, roomID, password string, invited bool) (Grant, []cp.Event, error) {
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return Grant{}, nil, err
	}
	var checked []byte
	if !invited {
		_, merr := s.store.MemberOf(ctx, roomID, actor.ID)
		if merr != nil && !errors.Is(merr, cp.ErrNotFound) {
			return Grant{}, nil, merr
		}
		if hiddenFrom(room, actor, merr) {
			return Grant{}, nil, fmt.Errorf("%w: no such room (private rooms are joined with their invite code)", cp.ErrNotFound)
		}
		// bcrypt costs tens of milliseconds: never inside the transaction
		// or the room's lock.
		if room.PasswordHash != nil {
			if bcrypt.CompareHashAndPassword(room.PasswordHash, []byte(password)) != nil {
				return Grant{}, nil, cp.ErrWrongPassword
			}
			checked = room.PasswordHash
		}
		if s.hookPasswordChecked != nil {
			s.hookPasswordChecked()
		}
	}
	defer s.lock(roomID)()
	now := s.now()
	var renew, private bool
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		u, err := tx.LockUser(actor.ID)
		if err != nil {
			return err
		}
		if u.Banned(s.now()) {
			return u.BanError()
		}
		if !invited && !bytes.Equal(room.PasswordHash, checked) {
			return cp.ErrWrongPassword // the password was checked against another hash
		}
		m, err := tx.Member(roomID, actor.ID)
		switch {
		case err == nil && m.State == cp.MemberKicked:
			return cp.ErrKicked
		case err == nil:
			renew = true
			return nil
		case !errors.Is(err, cp.ErrNotFound):
			return err
		}
		if !invited && !room.Public {
			if !actor.IsAdmin() {
				return cp.ErrNotFound
			}
			private = true
		}
		active, err := tx.ActiveMembers(roomID)
		if err != nil {
			return err
		}
		if len(active) >= room.MaxPlayers {
			return cp.ErrRoomFull
		}
		return tx.SaveMember(&cp.Member{RoomID: roomID, UserID: actor.ID, State: cp.MemberActive, JoinedAt: now})
	})
	if err != nil {
		return Grant{}, nil, err
	}
	sh, err := s.shard(room.Shard)
	if err != nil {
		return Grant{}, nil, err
	}
	if renew {
		// A retried join (the first answer was lost, or the server stopped
		// between the membership and the key): a fresh key unless the
		// member's node is online already.
		online, err := s.online(ctx, sh, room, actor.ID)
		if err != nil {
			return Grant{}, nil, err
		}
		if online {
			return Grant{}, nil, cp.ErrAlreadyMember
		}
		grant, err := s.mint(ctx, sh, room, actor.ID)
		return grant, nil, err
	}
	grant, err := s.mint(ctx, sh, room, actor.ID)
	if err != nil {
		// No key, no membership: undo so the player can retry (unless
		// another node kicked them meanwhile: that record stays).
		if derr := s.store.Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
			m, err := tx.Member(roomID, actor.ID)
			if err != nil || m.State != cp.MemberActive {
				return nil
			}
			return tx.DeleteMember(roomID, actor.ID)
		}); derr != nil {
			s.log.Error("undoing membership after failed key mint", "room", roomID, "err", derr)
		}
		return Grant{}, nil, err
	}
	if private {
		s.Audit(ctx, actor, cp.AuditJoinPrivate, roomID, "joined a private room by id, without its invite")
	}
	events := []cp.Event{{Type: cp.EventMemberJoined, RoomID: roomID, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now}}
	s.publish(ctx, events)
	return grant, events, nil
}

// online reports whether a member has a node online in the room.
func (s *Service) online(ctx context.Context, sh Shard, room cp.Room, userID uint64) (bool, error) {
	keys, err := s.store.JoinKeysOf(ctx, room.ID, userID)
	if err != nil {
		return false, err
	}
	if len(keys) == 0 {
		return false, nil
	}
	nodes, err := sh.Client.ListNodes(ctx, room.HeadscaleUser)
	if err != nil {
		return false, unavailable(err)
	}
	for _, n := range nodes {
		for _, k := range keys {
			if n.PreAuthKeyID == k.KeyID && n.Online {
				return true, nil
			}
		}
	}
	return false, nil
}

// RenewKey mints a fresh key for an active member (e.g. after a restart).
func (s *Service) RenewKey(ctx context.Context, actor cp.User, roomID string) (Grant, error) {
	defer s.lock(roomID)()
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return Grant{}, err
	}
	m, err := s.store.MemberOf(ctx, roomID, actor.ID)
	if hiddenFrom(room, actor, err) {
		return Grant{}, cp.ErrNotFound
	}
	if !room.Open() {
		return Grant{}, cp.ErrRoomClosed
	}
	if errors.Is(err, cp.ErrNotFound) {
		return Grant{}, cp.ErrNotMember
	} else if err != nil {
		return Grant{}, err
	}
	if m.State == cp.MemberKicked {
		return Grant{}, cp.ErrKicked
	}
	sh, err := s.shard(room.Shard)
	if err != nil {
		return Grant{}, err
	}
	// mint checks membership and ban again inside its transaction.
	return s.mint(ctx, sh, room, actor.ID)
}

// Leave removes actor from a room. When the host leaves, the longest
// present member becomes host; when the last member leaves, the room
// closes. An ErrUnavailable error means the member is out (recorded, events
// published) but cutting their nodes off waits for Headscale; a retried
// leave answers nil once it is done.
func (s *Service) Leave(ctx context.Context, actor cp.User, roomID string) ([]cp.Event, error) {
	defer s.lock(roomID)()
	now := s.now()
	var room cp.Room
	var events []cp.Event
	err := s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		m, err := tx.Member(roomID, actor.ID)
		if errors.Is(err, cp.ErrNotFound) || (err == nil && m.State != cp.MemberActive) {
			return cp.ErrNotMember
		} else if err != nil {
			return err
		}
		if err := tx.DeleteMember(roomID, actor.ID); err != nil {
			return err
		}
		events = append(events, cp.Event{Type: cp.EventMemberLeft, RoomID: roomID, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now})
		if room.HostID != actor.ID {
			return nil
		}
		rest, err := tx.ActiveMembers(roomID)
		if err != nil {
			return err
		}
		if len(rest) == 0 {
			room.ClosedAt = &now
			events = append(events, cp.Event{Type: cp.EventRoomClosed, RoomID: roomID, ActorID: actor.ID, At: now})
		} else {
			room.HostID = rest[0].UserID
			events = append(events, cp.Event{Type: cp.EventHostChanged, RoomID: roomID, UserID: rest[0].UserID, Username: rest[0].User.Username, ActorID: actor.ID, At: now})
		}
		return tx.SaveRoom(&room)
	})
	if errors.Is(err, cp.ErrNotMember) || errors.Is(err, cp.ErrRoomClosed) {
		// A retry of a leave whose cut is pending finishes it.
		if p, ok := s.pendingCutOf(roomID, actor.ID); ok {
			return nil, s.runCut(ctx, p)
		}
		if p, ok := s.pendingCutOf(roomID, 0); ok && errors.Is(err, cp.ErrRoomClosed) {
			return nil, s.runCut(ctx, p)
		}
	}
	if err != nil {
		return nil, err
	}
	s.publish(ctx, events)
	if room.Open() {
		s.paths.forget(roomID, actor.ID)
		return events, s.cut(ctx, room, actor.ID)
	}
	s.paths.forget(roomID, 0)
	return events, s.teardown(ctx, room)
}

// Kick removes a member for good; only the host or an admin may. Kicking
// a kicked member again cuts their nodes again (a retry after
// ErrUnavailable, which means the kick is recorded and published but
// cutting the nodes off waits for Headscale).
func (s *Service) Kick(ctx context.Context, actor cp.User, roomID, username string) ([]cp.Event, error) {
	defer s.lock(roomID)()
	now := s.now()
	var room cp.Room
	target, err := s.store.UserByName(ctx, username)
	if err != nil && !errors.Is(err, cp.ErrNotFound) {
		return nil, err
	}
	again := false
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if err := s.hostOrStaff(tx, room, actor, "kick", cp.RoleModerator); err != nil {
			return err
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		if target.ID == 0 {
			return cp.ErrNotMember
		}
		if target.ID == room.HostID {
			return cp.Invalid("the host cannot be kicked; close the room instead")
		}
		m, err := tx.Member(roomID, target.ID)
		if errors.Is(err, cp.ErrNotFound) {
			return cp.ErrNotMember
		} else if err != nil {
			return err
		}
		if m.State == cp.MemberKicked {
			again = true
			return nil
		}
		m.State = cp.MemberKicked
		return tx.SaveMember(&m)
	})
	if err != nil {
		return nil, err
	}
	var events []cp.Event
	if !again {
		if actor.CanModerate() {
			s.Audit(ctx, actor, cp.AuditKick, roomID, target.Username)
		}
		events = []cp.Event{{Type: cp.EventMemberKicked, RoomID: roomID, UserID: target.ID, Username: target.Username, ActorID: actor.ID, At: now}}
		s.publish(ctx, events)
	}
	s.paths.forget(roomID, target.ID)
	return events, s.cut(ctx, room, target.ID)
}

// hostOrStaff refuses an actor who is neither the room's host nor of the
// staff role given or above (cp.RoleModerator: moderators and admins):
// cp.ErrNotFound for outsiders of a private room (it does not exist for
// them), cp.ErrForbidden otherwise.
func (s *Service) hostOrStaff(tx *store.Tx, room cp.Room, actor cp.User, what, staff string) error {
	if room.HostID == actor.ID || cp.RoleRank(actor.Role) >= cp.RoleRank(staff) {
		return nil
	}
	if !room.Public {
		_, err := tx.Member(room.ID, actor.ID)
		if err != nil && !errors.Is(err, cp.ErrNotFound) {
			return err
		}
		if hiddenFrom(room, actor, err) {
			return cp.ErrNotFound
		}
	}
	who := "a moderator"
	if staff == cp.RoleAdmin {
		who = "an admin"
	}
	return fmt.Errorf("%w: only the host or %s can %s", cp.ErrForbidden, who, what)
}

// CloseRoom closes a room and removes every node in it; host or admin
// only. Closing a closed room whose cut is pending (ErrUnavailable: closed,
// published, nodes not yet cut) retries the cut.
func (s *Service) CloseRoom(ctx context.Context, actor cp.User, roomID string) ([]cp.Event, error) {
	return s.closeRoom(ctx, actor, roomID, func(tx *store.Tx, room cp.Room) error {
		return s.hostOrStaff(tx, room, actor, "close the room", cp.RoleModerator)
	})
}

func (s *Service) closeRoom(ctx context.Context, actor cp.User, roomID string, allowed func(*store.Tx, cp.Room) error) ([]cp.Event, error) {
	defer s.lock(roomID)()
	now := s.now()
	var room cp.Room
	err := s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if err := allowed(tx, room); err != nil {
			return err
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		room.ClosedAt = &now
		return tx.SaveRoom(&room)
	})
	if errors.Is(err, cp.ErrRoomClosed) {
		if p, ok := s.pendingCutOf(roomID, 0); ok {
			return nil, s.runCut(ctx, p)
		}
	}
	if err != nil {
		return nil, err
	}
	if actor.CanModerate() {
		s.Audit(ctx, actor, cp.AuditCloseRoom, roomID, "")
	}
	events := []cp.Event{{Type: cp.EventRoomClosed, RoomID: roomID, ActorID: actor.ID, At: now}}
	s.publish(ctx, events)
	s.paths.forget(roomID, 0)
	return events, s.teardown(ctx, room)
}

// RotateInvite replaces a room's invite code; host or admin only.
func (s *Service) RotateInvite(ctx context.Context, actor cp.User, roomID string) (string, error) {
	defer s.lock(roomID)()
	code := NewInviteCode()
	err := s.store.Tx(ctx, func(tx *store.Tx) error {
		room, err := tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if err := s.hostOrStaff(tx, room, actor, "change the invite", cp.RoleAdmin); err != nil {
			return err
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		room.InviteCode = code
		return tx.SaveRoom(&room)
	})
	return code, err
}

// removeHeadscaleUser deletes a user's nodes, then its keys, then the user.
// nodes and keys may be given when already listed.
func removeHeadscaleUser(ctx context.Context, c Headscale, u headscale.User, nodes []headscale.Node, keys []headscale.PreAuthKey) error {
	var err error
	if nodes == nil {
		if nodes, err = c.ListNodes(ctx, u.Name); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			return err
		}
	}
	for _, n := range nodes {
		if n.UserID == u.ID {
			if err := c.DeleteNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
				return err
			}
		}
	}
	if keys == nil {
		if keys, err = c.ListPreAuthKeys(ctx); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if k.UserID == u.ID {
			if err := c.DeletePreAuthKey(ctx, k.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
				return err
			}
		}
	}
	if err := c.DeleteUser(ctx, u.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
		return err
	}
	return nil
}

// ListPublicRooms lists open public rooms, optionally of one game.
func (s *Service) ListPublicRooms(ctx context.Context, game string) ([]store.RoomSummary, error) {
	return s.store.PublicRooms(ctx, strings.TrimSpace(game), 500)
}

// canSee reports whether actor may see a room's details.
func (s *Service) canSee(ctx context.Context, actor cp.User, room cp.Room) (member bool, err error) {
	m, err := s.store.MemberOf(ctx, room.ID, actor.ID)
	if err == nil && m.State == cp.MemberActive {
		return true, nil
	}
	if err != nil && !errors.Is(err, cp.ErrNotFound) {
		return false, err
	}
	if hiddenFrom(room, actor, err) {
		return false, cp.ErrNotFound // private rooms do not exist for outsiders
	}
	return false, nil
}

// GetRoom returns a room; member reports whether actor is an active member.
func (s *Service) GetRoom(ctx context.Context, actor cp.User, roomID string) (store.RoomSummary, bool, error) {
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return store.RoomSummary{}, false, err
	}
	member, err := s.canSee(ctx, actor, room)
	if err != nil {
		return store.RoomSummary{}, false, err
	}
	sum, err := s.store.Summary(ctx, room)
	return sum, member, err
}

// RoomByInvite previews the room of an invite code.
func (s *Service) RoomByInvite(ctx context.Context, code string) (store.RoomSummary, error) {
	room, err := s.store.RoomByInvite(ctx, strings.ToUpper(strings.TrimSpace(code)))
	if err != nil {
		return store.RoomSummary{}, err
	}
	if !room.Open() {
		return store.RoomSummary{}, cp.ErrRoomClosed
	}
	return s.store.Summary(ctx, room)
}

// Members lists a room's members and their nodes; members and admins only.
func (s *Service) Members(ctx context.Context, actor cp.User, roomID string) ([]MemberView, error) {
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	member, err := s.canSee(ctx, actor, room)
	if err != nil {
		return nil, err
	}
	if !member && !actor.CanModerate() {
		return nil, fmt.Errorf("%w: members only", cp.ErrForbidden)
	}
	members, err := s.store.ActiveMembers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	out := make([]MemberView, len(members))
	byUser := map[uint64]int{}
	// Path reports carry members' endpoints (public addresses): admins
	// see them, members see the paths without them.
	reports := s.paths.room(roomID, s.now())
	for i, m := range members {
		out[i] = MemberView{Member: m, Host: m.UserID == room.HostID}
		if r, ok := reports[m.UserID]; ok {
			if !actor.IsAdmin() {
				r = withoutEndpoints(r)
			}
			out[i].Paths = &r
		}
		byUser[m.UserID] = i
	}
	if !room.Open() {
		return out, nil
	}
	sh, err := s.shard(room.Shard)
	if err != nil {
		return nil, err
	}
	nodes, err := sh.Client.ListNodes(ctx, room.HeadscaleUser)
	if err != nil {
		return nil, unavailable(err)
	}
	keys, err := s.store.JoinKeysOfRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	owner := map[uint64]uint64{}
	for _, k := range keys {
		owner[k.KeyID] = k.UserID
	}
	for _, n := range nodes {
		if uid, ok := owner[n.PreAuthKeyID]; ok {
			if i, ok := byUser[uid]; ok {
				out[i].Nodes = append(out[i].Nodes, n)
			}
		}
	}
	s.serverPaths(out) // no endpoints in them
	return out, nil
}

// RoomsFilter is what admins filter rooms by.
type RoomsFilter = store.RoomFilter

// AdminRooms lists rooms of every visibility, newest first; moderators
// and admins.
func (s *Service) AdminRooms(ctx context.Context, actor cp.User, f RoomsFilter) ([]store.RoomSummary, error) {
	if !actor.CanModerate() {
		return nil, cp.ErrForbidden
	}
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 200
	}
	f.Query, f.Game = strings.TrimSpace(f.Query), strings.TrimSpace(f.Game)
	return s.store.Rooms(ctx, f)
}

// MyRooms lists the open rooms actor is an active member of.
func (s *Service) MyRooms(ctx context.Context, actor cp.User) ([]store.RoomSummary, error) {
	ids, err := s.store.RoomsOf(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	out := make([]store.RoomSummary, 0, len(ids))
	for _, id := range ids {
		r, err := s.store.Room(ctx, id)
		if err != nil {
			return nil, err
		}
		sum, err := s.store.Summary(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, sum)
	}
	return out, nil
}

package service

import (
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
	Paths *PathReport // how this member's node reaches the others; nil: no fresh report
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
	if len(p.Password) > maxPassword {
		return cp.Invalid("password: at most %d bytes", maxPassword)
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
		return store.RoomSummary{}, Grant{}, nil, err
	}
	events := []cp.Event{
		{Type: cp.EventRoomCreated, RoomID: id, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now},
		{Type: cp.EventMemberJoined, RoomID: id, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now},
	}
	return store.RoomSummary{Room: room, Members: 1, HostName: actor.Username}, grant, events, nil
}

// mint creates a single-use, ephemeral, short-lived key for one member and
// records it so that the node it registers can be traced to the member.
func (s *Service) mint(ctx context.Context, sh Shard, room cp.Room, userID uint64) (Grant, error) {
	key, err := sh.Client.CreatePreAuthKey(ctx, room.HeadscaleUserID, true, s.opts.JoinKeyTTL)
	if err != nil {
		return Grant{}, unavailable(err)
	}
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		return tx.CreateJoinKey(&cp.JoinKey{Shard: sh.Name, KeyID: key.ID, RoomID: room.ID, UserID: userID, ExpiresAt: key.Expiration, CreatedAt: s.now()})
	})
	if err != nil {
		// Unrecorded keys are never handed out; remove it now or in reconciliation.
		_ = sh.Client.DeletePreAuthKey(context.WithoutCancel(ctx), key.ID)
		return Grant{}, fmt.Errorf("recording join key: %w", err)
	}
	return Grant{RoomID: room.ID, LoginServer: sh.LoginServer, AuthKey: key.Key, ExpiresAt: key.Expiration}, nil
}

// JoinRoom adds actor to a room by id. Private rooms need their invite code.
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
	defer s.lock(roomID)()
	var room cp.Room
	now := s.now()
	err := s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		if !invited {
			if !room.Public && !actor.IsAdmin() {
				return fmt.Errorf("%w: this room is private; join it with its invite code", cp.ErrForbidden)
			}
			if room.PasswordHash != nil && bcrypt.CompareHashAndPassword(room.PasswordHash, []byte(password)) != nil {
				return cp.ErrWrongPassword
			}
		}
		m, err := tx.Member(roomID, actor.ID)
		switch {
		case err == nil && m.State == cp.MemberKicked:
			return cp.ErrKicked
		case err == nil:
			return cp.ErrAlreadyMember
		case !errors.Is(err, cp.ErrNotFound):
			return err
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
	grant, err := s.mint(ctx, sh, room, actor.ID)
	if err != nil {
		// No key, no membership: undo so the player can retry.
		if derr := s.store.Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error { return tx.DeleteMember(roomID, actor.ID) }); derr != nil {
			s.log.Error("undoing membership after failed key mint", "room", roomID, "err", derr)
		}
		return Grant{}, nil, err
	}
	return grant, []cp.Event{{Type: cp.EventMemberJoined, RoomID: roomID, UserID: actor.ID, Username: actor.Username, ActorID: actor.ID, At: now}}, nil
}

// RenewKey mints a fresh key for an active member (e.g. after a restart).
func (s *Service) RenewKey(ctx context.Context, actor cp.User, roomID string) (Grant, error) {
	defer s.lock(roomID)()
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return Grant{}, err
	}
	if !room.Open() {
		return Grant{}, cp.ErrRoomClosed
	}
	m, err := s.store.MemberOf(ctx, roomID, actor.ID)
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
	return s.mint(ctx, sh, room, actor.ID)
}

// Leave removes actor from a room. When the host leaves, the longest
// present member becomes host; when the last member leaves, the room closes.
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
	if err != nil {
		return nil, err
	}
	if room.Open() {
		s.paths.forget(roomID, actor.ID)
		s.cut(ctx, room, actor.ID)
	} else {
		s.paths.forget(roomID, 0)
		s.teardown(ctx, room)
	}
	return events, nil
}

// Kick removes a member for good; only the host or an admin may.
func (s *Service) Kick(ctx context.Context, actor cp.User, roomID, username string) ([]cp.Event, error) {
	defer s.lock(roomID)()
	now := s.now()
	var room cp.Room
	target, err := s.store.UserByName(ctx, username)
	if err != nil && !errors.Is(err, cp.ErrNotFound) {
		return nil, err
	}
	err = s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if room.HostID != actor.ID && !actor.IsAdmin() {
			return fmt.Errorf("%w: only the host or an admin can kick", cp.ErrForbidden)
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
		if errors.Is(err, cp.ErrNotFound) || (err == nil && m.State != cp.MemberActive) {
			return cp.ErrNotMember
		} else if err != nil {
			return err
		}
		m.State = cp.MemberKicked
		return tx.SaveMember(&m)
	})
	if err != nil {
		return nil, err
	}
	s.paths.forget(roomID, target.ID)
	s.cut(ctx, room, target.ID)
	return []cp.Event{{Type: cp.EventMemberKicked, RoomID: roomID, UserID: target.ID, Username: target.Username, ActorID: actor.ID, At: now}}, nil
}

// CloseRoom closes a room and removes every node in it; host or admin only.
func (s *Service) CloseRoom(ctx context.Context, actor cp.User, roomID string) ([]cp.Event, error) {
	defer s.lock(roomID)()
	now := s.now()
	var room cp.Room
	err := s.store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		room, err = tx.RoomForUpdate(roomID)
		if err != nil {
			return err
		}
		if room.HostID != actor.ID && !actor.IsAdmin() {
			return fmt.Errorf("%w: only the host or an admin can close the room", cp.ErrForbidden)
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		room.ClosedAt = &now
		return tx.SaveRoom(&room)
	})
	if err != nil {
		return nil, err
	}
	s.paths.forget(roomID, 0)
	s.teardown(ctx, room)
	return []cp.Event{{Type: cp.EventRoomClosed, RoomID: roomID, ActorID: actor.ID, At: now}}, nil
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
		if room.HostID != actor.ID && !actor.IsAdmin() {
			return fmt.Errorf("%w: only the host or an admin can change the invite", cp.ErrForbidden)
		}
		if !room.Open() {
			return cp.ErrRoomClosed
		}
		room.InviteCode = code
		return tx.SaveRoom(&room)
	})
	return code, err
}

// cut removes a former member's nodes and makes their keys unusable, so
// they lose the room network at once. Failures are left to reconciliation:
// the database already says they are out.
func (s *Service) cut(ctx context.Context, room cp.Room, userID uint64) {
	ctx = context.WithoutCancel(ctx)
	sh, err := s.shard(room.Shard)
	if err != nil {
		s.log.Error("cutting member off", "room", room.ID, "err", err)
		return
	}
	keys, err := s.store.JoinKeysOf(ctx, room.ID, userID)
	if err != nil {
		s.log.Error("cutting member off: listing keys", "room", room.ID, "err", err)
		return
	}
	mine := map[uint64]bool{}
	for _, k := range keys {
		mine[k.KeyID] = true
		if err := sh.Client.ExpirePreAuthKey(ctx, k.KeyID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			s.log.Warn("expiring a former member's key", "room", room.ID, "err", err)
		}
	}
	nodes, err := sh.Client.ListNodes(ctx, room.HeadscaleUser)
	if err != nil {
		s.log.Error("cutting member off: listing nodes; reconciliation will retry", "room", room.ID, "err", err)
		return
	}
	var theirs []headscale.Node
	for _, n := range nodes {
		if mine[n.PreAuthKeyID] {
			theirs = append(theirs, n)
		}
	}
	s.expireThenDelete(ctx, sh, room, theirs, false)
}

// teardown removes a closed room's nodes, keys and Headscale user.
func (s *Service) teardown(ctx context.Context, room cp.Room) {
	ctx = context.WithoutCancel(ctx)
	sh, err := s.shard(room.Shard)
	if err != nil {
		s.log.Error("tearing room down", "room", room.ID, "err", err)
		return
	}
	nodes, err := sh.Client.ListNodes(ctx, room.HeadscaleUser)
	if err != nil && !errors.Is(err, headscale.ErrNotFound) {
		s.log.Error("tearing room down: listing nodes; reconciliation will retry", "room", room.ID, "err", err)
		return
	}
	s.expireThenDelete(ctx, sh, room, nodes, true)
}

// expireThenDelete expires nodes now, so that they and their peers drop
// each other at once, and deletes them (and, with user, the room's
// Headscale user) after CutGrace. Reconciliation finishes the job if this
// process stops first.
func (s *Service) expireThenDelete(ctx context.Context, sh Shard, room cp.Room, nodes []headscale.Node, user bool) {
	for _, n := range nodes {
		if err := sh.Client.ExpireNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
			s.log.Error("expiring node", "room", room.ID, "node", n.ID, "err", err)
		}
	}
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		select {
		case <-time.After(s.opts.CutGrace):
		case <-s.closing:
		}
		if user {
			if err := removeHeadscaleUser(ctx, sh.Client, headscale.User{ID: room.HeadscaleUserID, Name: room.HeadscaleUser}, nil, nil); err != nil {
				s.log.Error("removing a closed room's headscale user; reconciliation will retry", "room", room.ID, "err", err)
			}
			return
		}
		for _, n := range nodes {
			if err := sh.Client.DeleteNode(ctx, n.ID); err != nil && !errors.Is(err, headscale.ErrNotFound) {
				s.log.Error("deleting node; reconciliation will retry", "room", room.ID, "node", n.ID, "err", err)
			}
		}
	}()
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
	if room.Public || actor.IsAdmin() {
		return false, nil
	}
	return false, cp.ErrNotFound // private rooms do not exist for outsiders
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
	if !member && !actor.IsAdmin() {
		return nil, fmt.Errorf("%w: members only", cp.ErrForbidden)
	}
	members, err := s.store.ActiveMembers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	out := make([]MemberView, len(members))
	byUser := map[uint64]int{}
	reports := s.paths.room(roomID, s.now())
	for i, m := range members {
		out[i] = MemberView{Member: m, Host: m.UserID == room.HostID}
		if r, ok := reports[m.UserID]; ok {
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
	return out, nil
}

// RoomsFilter is what admins filter rooms by.
type RoomsFilter = store.RoomFilter

// AdminRooms lists rooms of every visibility, newest first; admins only.
func (s *Service) AdminRooms(ctx context.Context, actor cp.User, f RoomsFilter) ([]store.RoomSummary, error) {
	if !actor.IsAdmin() {
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

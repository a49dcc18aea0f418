// Package store persists the control plane's domain through gorm: SQLite
// (pure Go, WAL, one writer) by default, PostgreSQL when scaled out. It
// knows tables and transactions, not rules: the service decides.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/internal/gormdb"
)

// Store is the control plane database.
type Store struct {
	db       *gorm.DB
	postgres bool
}

// Open connects to driver ("sqlite" or "postgres") at dsn and migrates.
func Open(driver, dsn string) (*Store, error) {
	db, err := gormdb.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	if err := gormdb.Migrate(db, &cp.User{}, &cp.Token{}, &cp.Room{}, &cp.Member{}, &cp.JoinKey{}, &cp.AuditEntry{}); err != nil {
		return nil, fmt.Errorf("migrating store: %w", err)
	}
	return &Store{db: db, postgres: driver == "postgres"}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping checks the database.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

func notFound(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return cp.ErrNotFound
	}
	return err
}

// CreateUser inserts u; a taken username gives cp.ErrUsernameTaken.
func (s *Store) CreateUser(ctx context.Context, u *cp.User) error {
	err := s.db.WithContext(ctx).Create(u).Error
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return cp.ErrUsernameTaken
	}
	if err != nil {
		return fmt.Errorf("creating user: %w", err)
	}
	return nil
}

// UserByName finds a user by username.
func (s *Store) UserByName(ctx context.Context, name string) (cp.User, error) {
	var u cp.User
	err := s.db.WithContext(ctx).Where("username = ?", name).First(&u).Error
	return u, notFound(err)
}

// UserByID finds a user by id.
func (s *Store) UserByID(ctx context.Context, id uint64) (cp.User, error) {
	var u cp.User
	err := s.db.WithContext(ctx).First(&u, id).Error
	return u, notFound(err)
}

// ListUsers lists users by id after the cursor, at most limit; with a
// non-empty prefix only usernames starting with it.
func (s *Store) ListUsers(ctx context.Context, prefix string, after uint64, limit int) ([]cp.User, error) {
	var out []cp.User
	q := s.db.WithContext(ctx).Where("id > ?", after)
	if prefix != "" {
		q = q.Where("username LIKE ? ESCAPE '\\'", likeEscaper.Replace(prefix)+"%")
	}
	err := q.Order("id").Limit(limit).Find(&out).Error
	return out, err
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)

// SetRole changes a user's role.
func (s *Store) SetRole(ctx context.Context, userID uint64, role string) error {
	return s.db.WithContext(ctx).Model(&cp.User{}).Where("id = ?", userID).Update("role", role).Error
}

// RoomFilter selects rooms for admins.
type RoomFilter struct {
	Query  string // prefix of the name, or a room id
	Game   string
	Closed *bool // nil: open and closed
	// Before pages backwards: rooms created before this (room) id's
	// creation, newest first.
	Before string
	Limit  int
}

// Rooms lists rooms of every visibility for admins, newest first.
func (s *Store) Rooms(ctx context.Context, f RoomFilter) ([]RoomSummary, error) {
	q := s.db.WithContext(ctx).Model(&cp.Room{})
	if f.Query != "" {
		q = q.Where("(LOWER(name) LIKE ? ESCAPE '\\' OR id = ?)", likeEscaper.Replace(strings.ToLower(f.Query))+"%", f.Query)
	}
	if f.Game != "" {
		q = q.Where("game = ?", f.Game)
	}
	if f.Closed != nil && *f.Closed {
		q = q.Where("closed_at IS NOT NULL")
	} else if f.Closed != nil {
		q = q.Where("closed_at IS NULL")
	}
	if f.Before != "" {
		var b cp.Room
		if err := s.db.WithContext(ctx).Where("id = ?", f.Before).First(&b).Error; err != nil {
			return nil, notFound(err)
		}
		q = q.Where("created_at < ? OR (created_at = ? AND id < ?)", b.CreatedAt, b.CreatedAt, b.ID)
	}
	var rooms []cp.Room
	if err := q.Order("created_at DESC, id DESC").Limit(f.Limit).Find(&rooms).Error; err != nil {
		return nil, err
	}
	return s.summarize(ctx, rooms)
}

// AddAudit appends an audit entry.
func (s *Store) AddAudit(ctx context.Context, e *cp.AuditEntry) error {
	return s.db.WithContext(ctx).Create(e).Error
}

// Audit lists audit entries newest first, with ids below before (0: the
// newest), at most limit.
func (s *Store) Audit(ctx context.Context, before uint64, limit int) ([]cp.AuditEntry, error) {
	q := s.db.WithContext(ctx)
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	var out []cp.AuditEntry
	err := q.Order("id DESC").Limit(limit).Find(&out).Error
	return out, err
}

// CreateToken stores a token hash.
func (s *Store) CreateToken(ctx context.Context, t *cp.Token) error {
	return s.db.WithContext(ctx).Create(t).Error
}

// TokenUser returns the user of an unexpired token hash.
func (s *Store) TokenUser(ctx context.Context, hash []byte, now time.Time) (cp.User, error) {
	var t cp.Token
	err := s.db.WithContext(ctx).Where("hash = ? AND expires_at > ?", hash, now).First(&t).Error
	if err != nil {
		return cp.User{}, notFound(err)
	}
	return s.UserByID(ctx, t.UserID)
}

// Token returns the unexpired token of a hash.
func (s *Store) Token(ctx context.Context, hash []byte, now time.Time) (cp.Token, error) {
	var t cp.Token
	err := s.db.WithContext(ctx).Where("hash = ? AND expires_at > ?", hash, now).First(&t).Error
	return t, notFound(err)
}

// DeleteToken revokes a token hash.
func (s *Store) DeleteToken(ctx context.Context, hash []byte) error {
	return s.db.WithContext(ctx).Where("hash = ?", hash).Delete(&cp.Token{}).Error
}

// DeleteExpiredTokens removes tokens that expired before now.
func (s *Store) DeleteExpiredTokens(ctx context.Context, now time.Time) (int64, error) {
	r := s.db.WithContext(ctx).Where("expires_at <= ?", now).Delete(&cp.Token{})
	return r.RowsAffected, r.Error
}

// Tx runs fn in a transaction.
func (s *Store) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		return fn(&Tx{db: db, postgres: s.postgres})
	})
}

// Tx is a transaction's view of the store.
type Tx struct {
	db       *gorm.DB
	postgres bool
}

// RoomForUpdate loads a room and, on PostgreSQL, locks its row until the
// transaction ends (SQLite has one writer, so its transactions are serial).
func (t *Tx) RoomForUpdate(id string) (cp.Room, error) {
	q := t.db
	if t.postgres {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	var r cp.Room
	err := q.Where("id = ?", id).First(&r).Error
	return r, notFound(err)
}

// LockUser loads a user and, on PostgreSQL, locks its row until the
// transaction ends: a ban (which updates the row) and the joins, room
// creations and key mints that re-read the ban here are serialized, and so
// are one user's room creations (the per-user room count).
func (t *Tx) LockUser(id uint64) (cp.User, error) {
	q := t.db
	if t.postgres {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	var u cp.User
	err := q.Where("id = ?", id).First(&u).Error
	return u, notFound(err)
}

// CreateRoom inserts a room.
func (t *Tx) CreateRoom(r *cp.Room) error { return t.db.Create(r).Error }

// SaveRoom updates a room.
func (t *Tx) SaveRoom(r *cp.Room) error { return t.db.Save(r).Error }

// Member loads a user's membership of a room.
func (t *Tx) Member(roomID string, userID uint64) (cp.Member, error) {
	var m cp.Member
	err := t.db.Where("room_id = ? AND user_id = ?", roomID, userID).First(&m).Error
	return m, notFound(err)
}

// SaveMember inserts or updates a membership.
func (t *Tx) SaveMember(m *cp.Member) error { return t.db.Save(m).Error }

// DeleteMember removes a membership.
func (t *Tx) DeleteMember(roomID string, userID uint64) error {
	return t.db.Where("room_id = ? AND user_id = ?", roomID, userID).Delete(&cp.Member{}).Error
}

// ActiveMembers lists a room's active members, oldest first, with users.
func (t *Tx) ActiveMembers(roomID string) ([]cp.Member, error) {
	var ms []cp.Member
	err := t.db.Preload("User").Where("room_id = ? AND state = ?", roomID, cp.MemberActive).Order("joined_at, user_id").Find(&ms).Error
	return ms, err
}

// CountOpenRoomsHostedBy counts open rooms hosted by userID.
func (t *Tx) CountOpenRoomsHostedBy(userID uint64) (int64, error) {
	var n int64
	err := t.db.Model(&cp.Room{}).Where("host_id = ? AND closed_at IS NULL", userID).Count(&n).Error
	return n, err
}

// CountJoinKeys counts the keys ever recorded for a room.
func (t *Tx) CountJoinKeys(roomID string) (int64, error) {
	var n int64
	err := t.db.Model(&cp.JoinKey{}).Where("room_id = ?", roomID).Count(&n).Error
	return n, err
}

// CreateJoinKey records a minted key.
func (t *Tx) CreateJoinKey(k *cp.JoinKey) error { return t.db.Create(k).Error }

// Room loads a room by id.
func (s *Store) Room(ctx context.Context, id string) (cp.Room, error) {
	var r cp.Room
	err := s.db.WithContext(ctx).Where("id = ?", id).First(&r).Error
	return r, notFound(err)
}

// RoomByInvite loads an open room by invite code.
func (s *Store) RoomByInvite(ctx context.Context, code string) (cp.Room, error) {
	var r cp.Room
	err := s.db.WithContext(ctx).Where("invite_code = ?", code).First(&r).Error
	return r, notFound(err)
}

// RoomSummary is a room with its active member count and host name.
type RoomSummary struct {
	cp.Room
	Members  int
	HostName string
}

// PublicRooms lists open public rooms, newest first, optionally by game.
func (s *Store) PublicRooms(ctx context.Context, game string, limit int) ([]RoomSummary, error) {
	q := s.db.WithContext(ctx).Where("public = ? AND closed_at IS NULL", true)
	if game != "" {
		q = q.Where("game = ?", game)
	}
	var rooms []cp.Room
	if err := q.Order("created_at DESC").Limit(limit).Find(&rooms).Error; err != nil {
		return nil, err
	}
	return s.summarize(ctx, rooms)
}

// Summarize adds member counts and host names to rooms.
func (s *Store) summarize(ctx context.Context, rooms []cp.Room) ([]RoomSummary, error) {
	if len(rooms) == 0 {
		return nil, nil
	}
	ids := make([]string, len(rooms))
	hostIDs := make([]uint64, len(rooms))
	for i, r := range rooms {
		ids[i], hostIDs[i] = r.ID, r.HostID
	}
	type count struct {
		RoomID string
		N      int
	}
	var counts []count
	if err := s.db.WithContext(ctx).Model(&cp.Member{}).Select("room_id, count(*) as n").
		Where("room_id IN ? AND state = ?", ids, cp.MemberActive).Group("room_id").Scan(&counts).Error; err != nil {
		return nil, err
	}
	var hosts []cp.User
	if err := s.db.WithContext(ctx).Where("id IN ?", hostIDs).Find(&hosts).Error; err != nil {
		return nil, err
	}
	byRoom := map[string]int{}
	for _, c := range counts {
		byRoom[c.RoomID] = c.N
	}
	names := map[uint64]string{}
	for _, h := range hosts {
		names[h.ID] = h.Username
	}
	out := make([]RoomSummary, len(rooms))
	for i, r := range rooms {
		out[i] = RoomSummary{Room: r, Members: byRoom[r.ID], HostName: names[r.HostID]}
	}
	return out, nil
}

// Summary returns one room's summary.
func (s *Store) Summary(ctx context.Context, r cp.Room) (RoomSummary, error) {
	out, err := s.summarize(ctx, []cp.Room{r})
	if err != nil {
		return RoomSummary{}, err
	}
	return out[0], nil
}

// ActiveMembers lists a room's active members with their users.
func (s *Store) ActiveMembers(ctx context.Context, roomID string) ([]cp.Member, error) {
	var ms []cp.Member
	err := s.db.WithContext(ctx).Preload("User").Where("room_id = ? AND state = ?", roomID, cp.MemberActive).
		Order("joined_at, user_id").Find(&ms).Error
	return ms, err
}

// MemberOf loads a membership.
func (s *Store) MemberOf(ctx context.Context, roomID string, userID uint64) (cp.Member, error) {
	var m cp.Member
	err := s.db.WithContext(ctx).Where("room_id = ? AND user_id = ?", roomID, userID).First(&m).Error
	return m, notFound(err)
}

// OpenRooms lists the open rooms of a shard.
func (s *Store) OpenRooms(ctx context.Context, shard string) ([]cp.Room, error) {
	var rooms []cp.Room
	err := s.db.WithContext(ctx).Where("shard = ? AND closed_at IS NULL", shard).Find(&rooms).Error
	return rooms, err
}

// CountOpenRooms counts open rooms per shard.
func (s *Store) CountOpenRooms(ctx context.Context) (map[string]int, error) {
	type row struct {
		Shard string
		N     int
	}
	var rows []row
	if err := s.db.WithContext(ctx).Model(&cp.Room{}).Select("shard, count(*) as n").
		Where("closed_at IS NULL").Group("shard").Scan(&rows).Error; err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Shard] = r.N
	}
	return out, nil
}

// CountActiveMembers counts active members of open rooms.
func (s *Store) CountActiveMembers(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&cp.Member{}).
		Joins("JOIN rooms ON rooms.id = members.room_id AND rooms.closed_at IS NULL").
		Where("members.state = ?", cp.MemberActive).Count(&n).Error
	return n, err
}

// JoinKeys lists the recorded keys of a shard.
func (s *Store) JoinKeys(ctx context.Context, shard string) ([]cp.JoinKey, error) {
	var ks []cp.JoinKey
	err := s.db.WithContext(ctx).Where("shard = ?", shard).Find(&ks).Error
	return ks, err
}

// JoinKeysOf lists the recorded keys of a member.
func (s *Store) JoinKeysOf(ctx context.Context, roomID string, userID uint64) ([]cp.JoinKey, error) {
	var ks []cp.JoinKey
	err := s.db.WithContext(ctx).Where("room_id = ? AND user_id = ?", roomID, userID).Find(&ks).Error
	return ks, err
}

// DeleteJoinKeys removes key records.
func (s *Store) DeleteJoinKeys(ctx context.Context, shard string, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	return s.db.WithContext(ctx).Where("shard = ? AND key_id IN ?", shard, ids).Delete(&cp.JoinKey{}).Error
}

// ActiveMembersByRoom maps each open room of a shard to its active
// members' user ids. Users banned at now are not counted: their
// memberships are as good as gone.
func (s *Store) ActiveMembersByRoom(ctx context.Context, shard string, now time.Time) (map[string]map[uint64]bool, error) {
	type row struct {
		RoomID string
		UserID uint64
	}
	var rows []row
	err := s.db.WithContext(ctx).Model(&cp.Member{}).Select("members.room_id, members.user_id").
		Joins("JOIN rooms ON rooms.id = members.room_id AND rooms.closed_at IS NULL AND rooms.shard = ?", shard).
		Joins("JOIN users ON users.id = members.user_id AND NOT "+bannedAt, now.UTC()).
		Where("members.state = ?", cp.MemberActive).Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	out := map[string]map[uint64]bool{}
	for _, r := range rows {
		if out[r.RoomID] == nil {
			out[r.RoomID] = map[uint64]bool{}
		}
		out[r.RoomID][r.UserID] = true
	}
	return out, nil
}

// JoinKeysOfRoom lists the recorded keys of a room.
func (s *Store) JoinKeysOfRoom(ctx context.Context, roomID string) ([]cp.JoinKey, error) {
	var ks []cp.JoinKey
	err := s.db.WithContext(ctx).Where("room_id = ?", roomID).Find(&ks).Error
	return ks, err
}

// RoomsOf lists the open rooms a user is an active member of.
func (s *Store) RoomsOf(ctx context.Context, userID uint64) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&cp.Member{}).Select("members.room_id").
		Joins("JOIN rooms ON rooms.id = members.room_id AND rooms.closed_at IS NULL").
		Where("members.user_id = ? AND members.state = ?", userID, cp.MemberActive).Scan(&ids).Error
	return ids, err
}

// BannedMembers lists the active memberships of users banned at now in
// the open rooms of a shard, with their users.
func (s *Store) BannedMembers(ctx context.Context, shard string, now time.Time) ([]cp.Member, error) {
	var ms []cp.Member
	err := s.db.WithContext(ctx).Preload("User").Select("members.*").
		Joins("JOIN rooms ON rooms.id = members.room_id AND rooms.closed_at IS NULL AND rooms.shard = ?", shard).
		Joins("JOIN users ON users.id = members.user_id AND "+bannedAt, now.UTC()).
		Where("members.state = ?", cp.MemberActive).Find(&ms).Error
	return ms, err
}

// KeylessRooms lists the open rooms of a shard created before before for
// which no join key was ever recorded: their host never got a grant.
func (s *Store) KeylessRooms(ctx context.Context, shard string, before time.Time) ([]cp.Room, error) {
	var rooms []cp.Room
	err := s.db.WithContext(ctx).
		Where("shard = ? AND closed_at IS NULL AND created_at < ?", shard, before).
		Where("NOT EXISTS (SELECT 1 FROM join_keys WHERE join_keys.room_id = rooms.id)").
		Find(&rooms).Error
	return rooms, err
}

package store

import (
	"context"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
)

// UserRoom is a room a user is or was in, as a profile shows it.
type UserRoom struct {
	RoomSummary
	// State is the membership's (cp.MemberActive, cp.MemberKicked), or
	// empty when none is left (the user left; the room is known from
	// their join keys or from hosting it).
	State    string
	JoinedAt *time.Time
}

// UserRooms lists the rooms a user is or was in, newest first, at most
// limit: their memberships (active or kicked), the rooms they got join
// keys for and the rooms they host or hosted. A leave deletes the
// membership, so a room left long ago is known only while its key
// records last.
func (s *Store) UserRooms(ctx context.Context, userID uint64, limit int) ([]UserRoom, error) {
	var ms []cp.Member
	if err := s.db.WithContext(ctx).Where("user_id = ?", userID).Find(&ms).Error; err != nil {
		return nil, err
	}
	var keyed, hosted []string
	if err := s.db.WithContext(ctx).Model(&cp.JoinKey{}).Distinct("room_id").Where("user_id = ?", userID).Pluck("room_id", &keyed).Error; err != nil {
		return nil, err
	}
	if err := s.db.WithContext(ctx).Model(&cp.Room{}).Where("host_id = ?", userID).Pluck("id", &hosted).Error; err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, m := range ms {
		ids[m.RoomID] = true
	}
	for _, id := range append(keyed, hosted...) {
		ids[id] = true
	}
	if len(ids) == 0 {
		return nil, nil
	}
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	var rooms []cp.Room
	if err := s.db.WithContext(ctx).Where("id IN ?", list).Order("created_at DESC, id DESC").Limit(limit).Find(&rooms).Error; err != nil {
		return nil, err
	}
	sums, err := s.summarize(ctx, rooms)
	if err != nil {
		return nil, err
	}
	byRoom := map[string]cp.Member{}
	for _, m := range ms {
		byRoom[m.RoomID] = m
	}
	out := make([]UserRoom, len(sums))
	for i, r := range sums {
		out[i] = UserRoom{RoomSummary: r}
		if m, ok := byRoom[r.ID]; ok {
			joined := m.JoinedAt
			out[i].State, out[i].JoinedAt = m.State, &joined
		}
	}
	return out, nil
}

// AuditAbout lists the audit entries about a user, newest first, at most
// limit: those naming them as their target (bans, mutes, roles, purges),
// their kicks (the detail names the kicked user) and the deletes of
// their messages (the detail starts "<username>: ").
func (s *Store) AuditAbout(ctx context.Context, username string, limit int) ([]cp.AuditEntry, error) {
	var out []cp.AuditEntry
	err := s.db.WithContext(ctx).
		Where("target = ? OR (action = ? AND detail = ?) OR (action = ? AND detail LIKE ? ESCAPE '\\')",
			username, cp.AuditKick, username, cp.AuditDeleteMessage, likeEscaper.Replace(username)+": %").
		Order("id DESC").Limit(limit).Find(&out).Error
	return out, err
}

package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	cp "github.com/roomnet/roomnet/controlplane"
)

// bannedAt is the condition "the users row is banned at ?" (cp.User.Banned
// in SQL): banned, and either for good or until after the time given.
const bannedAt = "(users.banned_at IS NOT NULL AND (users.ban_until IS NULL OR users.ban_until > ?))"

// SetBanned bans a user for good at at, or with a nil at lifts any ban;
// see Ban.
func (s *Store) SetBanned(ctx context.Context, userID uint64, at *time.Time) error {
	if at == nil {
		return s.Unban(ctx, userID)
	}
	return s.Ban(ctx, userID, *at, nil, "")
}

// Ban bans a user from at, until until (nil: for good), for reason, and
// revokes every token of the user in the same transaction.
func (s *Store) Ban(ctx context.Context, userID uint64, at time.Time, until *time.Time, reason string) error {
	at = at.UTC()
	if until != nil {
		u := until.UTC()
		until = &u
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&cp.User{}).Where("id = ?", userID).
			Updates(map[string]any{"banned_at": at, "ban_until": until, "ban_reason": reason}).Error; err != nil {
			return err
		}
		return tx.Where("user_id = ?", userID).Delete(&cp.Token{}).Error
	})
}

// Unban lifts a user's ban, temporary or not.
func (s *Store) Unban(ctx context.Context, userID uint64) error {
	return s.db.WithContext(ctx).Model(&cp.User{}).Where("id = ?", userID).
		Updates(map[string]any{"banned_at": nil, "ban_until": nil, "ban_reason": ""}).Error
}

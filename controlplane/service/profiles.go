package service

import (
	"context"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/store"
)

// MuteReader is what a Moderator may also offer: a user's chat mute with
// its reason, for their profile.
type MuteReader interface {
	MuteOf(ctx context.Context, userID uint64) (until time.Time, reason string, ok bool, err error)
}

// Profile is what staff see of a player: the account with its ban and
// mute, the rooms they are and were in, and what was done about them.
type Profile struct {
	User cp.User
	// Banned: the ban lasts (User.BannedAt, BanUntil, BanReason say how).
	Banned bool
	// MutedUntil and MuteReason: the chat mute, when one lasts.
	MutedUntil *time.Time
	MuteReason string
	Rooms      []store.UserRoom
	// History is the audit log about the user, newest first.
	History []cp.AuditEntry
}

// Profile limits: the newest rooms and audit entries.
const (
	profileRooms   = 100
	profileHistory = 100
)

// Profile shows a user to moderators and admins.
func (s *Service) Profile(ctx context.Context, actor cp.User, username string) (Profile, error) {
	if !actor.CanModerate() {
		return Profile{}, cp.ErrForbidden
	}
	u, err := s.store.UserByName(ctx, username)
	if err != nil {
		return Profile{}, err
	}
	p := Profile{User: u, Banned: u.Banned(s.now())}
	if m := s.mod.Load(); m != nil {
		if r, ok := (*m).(MuteReader); ok {
			until, reason, muted, err := r.MuteOf(ctx, u.ID)
			if err != nil {
				return Profile{}, err
			}
			if muted {
				p.MutedUntil, p.MuteReason = &until, reason
			}
		}
	}
	if p.Rooms, err = s.store.UserRooms(ctx, u.ID, profileRooms); err != nil {
		return Profile{}, err
	}
	if p.History, err = s.store.AuditAbout(ctx, u.Username, profileHistory); err != nil {
		return Profile{}, err
	}
	return p, nil
}

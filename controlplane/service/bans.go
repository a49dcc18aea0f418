package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
)

// MaxBan bounds a temporary ban; a longer one is a permanent ban.
const (
	MaxBan        = 365 * 24 * time.Hour
	maxBanSeconds = int64(MaxBan / time.Second)
)

// Ban bars a user (moderators bar players, admins anyone but themselves), for seconds (1 to MaxBan) or, with 0,
// for good, with a reason the user is shown: their tokens are revoked,
// they leave every room (their nodes are cut off) and their chat sessions
// end. A temporary ban ends by itself at its end; the user signs in again
// and rooms are joined anew. The ban is committed first; joins, room
// creations and key mints re-read it inside their transactions, so no
// membership or key appears while it lasts, and the rooms listed
// afterwards are all there is to leave. Ban goes on through every room
// when one fails and reports the failures; reconciliation removes
// whatever a failure left (a banned user's memberships count as gone
// there while the ban lasts).
func (s *Service) Ban(ctx context.Context, actor cp.User, username string, seconds int64, reason string) (cp.User, []cp.Event, error) {
	if !actor.CanModerate() {
		return cp.User{}, nil, cp.ErrForbidden
	}
	// Compared as seconds, as for mutes: a huge count must not overflow
	// into a short ban.
	if seconds < 0 || seconds > maxBanSeconds {
		return cp.User{}, nil, cp.Invalid("seconds: 1 to %d, or none for a permanent ban", maxBanSeconds)
	}
	if err := validReason(reason); err != nil {
		return cp.User{}, nil, err
	}
	target, err := s.store.UserByName(ctx, username)
	if err != nil {
		return cp.User{}, nil, err
	}
	if target.ID == actor.ID {
		return cp.User{}, nil, cp.Invalid("nobody bans themselves")
	}
	if err := mayActOn(actor, target); err != nil {
		return cp.User{}, nil, err
	}
	now := s.now().UTC().Truncate(time.Microsecond) // as stored
	var until *time.Time
	if seconds > 0 {
		u := now.Add(time.Duration(seconds) * time.Second)
		until = &u
	}
	if err := s.store.Ban(ctx, target.ID, now, until, reason); err != nil {
		return cp.User{}, nil, fmt.Errorf("banning: %w", err)
	}
	target.BannedAt, target.BanUntil, target.BanReason = &now, until, reason
	s.Audit(ctx, actor, cp.AuditBan, target.Username, banDetail(until, reason))
	events := []cp.Event{{Type: cp.EventUserBanned, UserID: target.ID, Username: target.Username, ActorID: actor.ID, At: now}}
	s.publish(ctx, events)
	evs, err := s.evict(ctx, target)
	return target, append(events, evs...), err
}

// banDetail is a ban's audit detail: "until <time> <reason>" or
// "permanent <reason>".
func banDetail(until *time.Time, reason string) string {
	if until == nil {
		return strings.TrimSpace("permanent " + reason)
	}
	return strings.TrimSpace(fmt.Sprintf("until %s %s", until.Format(time.RFC3339), reason))
}

// evict takes a banned user out of every open room they are in.
func (s *Service) evict(ctx context.Context, target cp.User) ([]cp.Event, error) {
	rooms, err := s.store.RoomsOf(ctx, target.ID)
	if err != nil {
		return nil, err
	}
	var events []cp.Event
	var errs []error
	for _, roomID := range rooms {
		evs, err := s.Leave(ctx, target, roomID)
		events = append(events, evs...)
		if err != nil && !errors.Is(err, cp.ErrNotMember) && !errors.Is(err, cp.ErrRoomClosed) {
			errs = append(errs, fmt.Errorf("removing a banned user from room %s: %w", roomID, err))
		}
	}
	return events, errors.Join(errs...)
}

// Unban lifts a ban, temporary or not (moderators lift players' bans,
// admins anyone's); the user signs in again.
func (s *Service) Unban(ctx context.Context, actor cp.User, username string) error {
	if !actor.CanModerate() {
		return cp.ErrForbidden
	}
	target, err := s.store.UserByName(ctx, username)
	if err != nil {
		return err
	}
	if err := mayActOn(actor, target); err != nil {
		return err
	}
	if err := s.store.Unban(ctx, target.ID); err != nil {
		return err
	}
	s.Audit(ctx, actor, cp.AuditUnban, target.Username, "")
	return nil
}

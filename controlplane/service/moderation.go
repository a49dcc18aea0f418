package service

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roomnet/roomnet/chat"
	cp "github.com/roomnet/roomnet/controlplane"
)

// Moderation rules: every path (REST, the panel, a future node) goes
// through these methods, which check the actor, bound the input, act
// through chat and write the audit log.

// Moderator is what moderation needs of chat.
type Moderator interface {
	DeleteMessage(ctx context.Context, conv string, seq uint64) error
	Mute(ctx context.Context, userID uint64, until time.Time, reason string) error
	Unmute(ctx context.Context, userID uint64) error
	Announce(ctx context.Context, conv, text string) (uint64, error)
	// PurgeMessages deletes every text message of a user (in conv when
	// it is not empty) as DeleteMessage does, and counts them.
	PurgeMessages(ctx context.Context, userID uint64, conv string) (int, error)
}

// MessageReader is what a Moderator may also offer: a text message's
// sender and body, so that the audit log of a delete keeps what was said.
type MessageReader interface {
	MessageText(ctx context.Context, conv string, seq uint64) (sender, body string, ok bool, err error)
}

// Limits of moderation input.
const (
	// MaxMute bounds a mute; longer is a ban.
	MaxMute        = 30 * 24 * time.Hour
	MaxReason      = 200  // bytes
	MaxAnnounce    = 1000 // bytes
	maxConvLen     = 80
	maxMuteSeconds = int64(MaxMute / time.Second)
)

// SetModerator makes chat moderation available; without it the
// moderation methods answer cp.ErrNotFound. Set it before serving.
func (s *Service) SetModerator(m Moderator) { s.mod.Store(&m) }

func (s *Service) moderator(actor cp.User) (Moderator, error) {
	if !actor.CanModerate() {
		return nil, cp.ErrForbidden
	}
	m := s.mod.Load()
	if m == nil {
		return nil, fmt.Errorf("%w: chat moderation is not available", cp.ErrNotFound)
	}
	return *m, nil
}

// mayActOn refuses a moderator acting on anyone but a player: moderators
// mute and ban players; admins anyone (but themselves, where that is
// refused).
func mayActOn(actor, target cp.User) error {
	if !actor.IsAdmin() && target.Role != cp.RolePlayer {
		return fmt.Errorf("%w: moderators act on players only", cp.ErrForbidden)
	}
	return nil
}

func validReason(r string) error {
	if len(r) > MaxReason || !utf8.ValidString(r) {
		return cp.Invalid("reason: at most %d bytes of UTF-8", MaxReason)
	}
	return nil
}

// Mute refuses a user's chat sends for seconds (1 to MaxMute) with a
// reason; moderators (players only) and admins, audited. It returns the user and the mute's end.
func (s *Service) Mute(ctx context.Context, actor cp.User, username string, seconds int64, reason string) (cp.User, time.Time, error) {
	mod, err := s.moderator(actor)
	if err != nil {
		return cp.User{}, time.Time{}, err
	}
	// Compared as seconds: multiplied into a Duration first, a huge count
	// overflows into a short or negative mute.
	if seconds < 1 || seconds > maxMuteSeconds {
		return cp.User{}, time.Time{}, cp.Invalid("seconds: 1 to %d", maxMuteSeconds)
	}
	if err := validReason(reason); err != nil {
		return cp.User{}, time.Time{}, err
	}
	u, err := s.store.UserByName(ctx, username)
	if err != nil {
		return cp.User{}, time.Time{}, err
	}
	if err := mayActOn(actor, u); err != nil {
		return cp.User{}, time.Time{}, err
	}
	until := s.now().Add(time.Duration(seconds) * time.Second).UTC()
	if err := mod.Mute(ctx, u.ID, until, reason); err != nil {
		return cp.User{}, time.Time{}, err
	}
	s.Audit(ctx, actor, cp.AuditMute, u.Username, strings.TrimSpace(fmt.Sprintf("until %s %s", until.Format(time.RFC3339), reason)))
	return u, until, nil
}

// Unmute lifts a mute; moderators (players only) and admins, audited.
func (s *Service) Unmute(ctx context.Context, actor cp.User, username string) (cp.User, error) {
	mod, err := s.moderator(actor)
	if err != nil {
		return cp.User{}, err
	}
	u, err := s.store.UserByName(ctx, username)
	if err != nil {
		return cp.User{}, err
	}
	if err := mayActOn(actor, u); err != nil {
		return cp.User{}, err
	}
	if err := mod.Unmute(ctx, u.ID); err != nil {
		return cp.User{}, err
	}
	s.Audit(ctx, actor, cp.AuditUnmute, u.Username, "")
	return u, nil
}

// DeleteMessage removes a text message's body for everyone; moderators
// and admins, audited.
func (s *Service) DeleteMessage(ctx context.Context, actor cp.User, conv string, seq uint64) error {
	mod, err := s.moderator(actor)
	if err != nil {
		return err
	}
	if conv == "" || len(conv) > maxConvLen || seq == 0 || seq > math.MaxInt64 {
		return cp.Invalid("conv: 1 to %d bytes; seq: 1 to %d", maxConvLen, int64(math.MaxInt64))
	}
	var said string
	if r, ok := mod.(MessageReader); ok {
		if sender, body, ok, err := r.MessageText(ctx, conv, seq); err == nil && ok {
			said = clip(sender+": "+body, maxAuditDetail)
		}
	}
	if err := mod.DeleteMessage(ctx, conv, seq); err != nil {
		return err
	}
	s.Audit(ctx, actor, cp.AuditDeleteMessage, fmt.Sprintf("%s#%d", conv, seq), said)
	return nil
}

// maxAuditDetail is the audit log's detail column's size.
const maxAuditDetail = 500

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// PurgeMessages deletes every text message of a user, in conv when it is
// not empty, each as DeleteMessage deletes one (its body gone for
// everyone); moderators (players only) and admins, audited with the
// count. A user with no messages is 0.
func (s *Service) PurgeMessages(ctx context.Context, actor cp.User, username, conv string) (int, error) {
	mod, err := s.moderator(actor)
	if err != nil {
		return 0, err
	}
	if conv != "" {
		if _, ok := chat.ConvKind(conv); !ok || len(conv) > maxConvLen {
			return 0, cp.Invalid("conv: a conversation (lobby:<name>, room:<id>, dm:<id>:<id>) of at most %d bytes", maxConvLen)
		}
	}
	u, err := s.store.UserByName(ctx, username)
	if err != nil {
		return 0, err
	}
	if err := mayActOn(actor, u); err != nil {
		return 0, err
	}
	n, err := mod.PurgeMessages(ctx, u.ID, conv)
	if n > 0 || err == nil {
		detail := fmt.Sprintf("%d messages", n)
		if conv != "" {
			detail += " in " + conv
		}
		if err != nil {
			detail += " (stopped by an error)"
		}
		s.Audit(ctx, actor, cp.AuditPurgeMessages, u.Username, detail)
	}
	return n, err
}

// Announce posts a critical system message to a lobby or to an open room;
// moderators and admins, audited. A room that does not exist or is closed is
// cp.ErrNotFound.
func (s *Service) Announce(ctx context.Context, actor cp.User, conv, text string) (uint64, error) {
	mod, err := s.moderator(actor)
	if err != nil {
		return 0, err
	}
	if text == "" || len(text) > MaxAnnounce || !utf8.ValidString(text) {
		return 0, cp.Invalid("text: 1 to %d bytes of UTF-8", MaxAnnounce)
	}
	kind, ok := chat.ConvKind(conv)
	switch {
	case !ok || (kind != chat.KindRoom && kind != chat.KindLobby):
		return 0, cp.Invalid("conv: a room (room:<id>) or a lobby (lobby:<name>)")
	case kind == chat.KindRoom:
		room, err := s.store.Room(ctx, strings.TrimPrefix(conv, chat.KindRoom+":"))
		if err != nil {
			return 0, err
		}
		if !room.Open() {
			return 0, fmt.Errorf("%w: the room is closed", cp.ErrNotFound)
		}
	}
	seq, err := mod.Announce(ctx, conv, text)
	if err != nil {
		return 0, err
	}
	s.Audit(ctx, actor, cp.AuditAnnounce, fmt.Sprintf("%s#%d", conv, seq), text)
	return seq, nil
}

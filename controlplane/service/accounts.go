package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	cp "github.com/roomnet/roomnet/controlplane"
)

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{2,31}$`)

const (
	minPassword = 8
	maxPassword = 72 // bcrypt's limit
	bcryptCost  = 11
)

// dummyHash makes a login for an unknown user cost as much as a real one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("roomnet-timing-equalizer"), bcryptCost)

func validateCredentials(username, password string) error {
	if !usernameRE.MatchString(username) {
		return cp.Invalid("username: 3 to 32 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
	}
	if len(password) < minPassword || len(password) > maxPassword {
		return cp.Invalid("password: %d to %d bytes", minPassword, maxPassword)
	}
	return nil
}

// Register creates a player account.
func (s *Service) Register(ctx context.Context, username, password string) (cp.User, error) {
	if !s.opts.OpenSignup {
		return cp.User{}, cp.ErrSignupDisabled
	}
	return s.createUser(ctx, username, password, cp.RolePlayer)
}

func (s *Service) createUser(ctx context.Context, username, password, role string) (cp.User, error) {
	if err := validateCredentials(username, password); err != nil {
		return cp.User{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return cp.User{}, fmt.Errorf("hashing password: %w", err)
	}
	u := cp.User{Username: username, PasswordHash: hash, Role: role, CreatedAt: s.now()}
	if err := s.store.CreateUser(ctx, &u); err != nil {
		return cp.User{}, err
	}
	return u, nil
}

// BootstrapAdmin creates the admin account if it does not exist. With an
// empty password it generates one and returns it (to be shown once).
func (s *Service) BootstrapAdmin(ctx context.Context, username, password string) (generated string, created bool, err error) {
	if _, err := s.store.UserByName(ctx, username); err == nil {
		return "", false, nil
	} else if !errors.Is(err, cp.ErrNotFound) {
		return "", false, fmt.Errorf("looking up admin: %w", err)
	}
	if password == "" {
		b := make([]byte, 18)
		if _, err := rand.Read(b); err != nil {
			return "", false, err
		}
		password = base64.RawURLEncoding.EncodeToString(b)
		generated = password
	}
	if _, err := s.createUser(ctx, username, password, cp.RoleAdmin); err != nil {
		return "", false, fmt.Errorf("creating admin: %w", err)
	}
	return generated, true, nil
}

// Login checks credentials and issues a bearer token.
func (s *Service) Login(ctx context.Context, username, password string) (token string, u cp.User, expires time.Time, err error) {
	u, err = s.store.UserByName(ctx, username)
	if errors.Is(err, cp.ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return "", cp.User{}, time.Time{}, cp.ErrUnauthorized
	}
	if err != nil {
		return "", cp.User{}, time.Time{}, fmt.Errorf("looking up user: %w", err)
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		return "", cp.User{}, time.Time{}, cp.ErrUnauthorized
	}
	if u.BannedAt != nil {
		return "", cp.User{}, time.Time{}, cp.ErrForbidden
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", cp.User{}, time.Time{}, err
	}
	token = "rn_" + base64.RawURLEncoding.EncodeToString(raw)
	expires = s.now().Add(s.opts.TokenTTL)
	if err := s.store.CreateToken(ctx, &cp.Token{Hash: hashToken(token), UserID: u.ID, ExpiresAt: expires, CreatedAt: s.now()}); err != nil {
		return "", cp.User{}, time.Time{}, fmt.Errorf("storing token: %w", err)
	}
	return token, u, expires, nil
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// Authenticate returns the user of a bearer token.
func (s *Service) Authenticate(ctx context.Context, token string) (cp.User, error) {
	if token == "" || len(token) > 128 {
		return cp.User{}, cp.ErrUnauthorized
	}
	u, err := s.store.TokenUser(ctx, hashToken(token), s.now())
	if errors.Is(err, cp.ErrNotFound) {
		return cp.User{}, cp.ErrUnauthorized
	}
	if err != nil {
		return cp.User{}, fmt.Errorf("checking token: %w", err)
	}
	if u.BannedAt != nil {
		return cp.User{}, cp.ErrUnauthorized
	}
	return u, nil
}

// Logout revokes a token.
func (s *Service) Logout(ctx context.Context, token string) error {
	return s.store.DeleteToken(ctx, hashToken(token))
}

// ListUsers lists accounts, optionally those whose name starts with
// prefix; admins only.
func (s *Service) ListUsers(ctx context.Context, actor cp.User, prefix string, after uint64, limit int) ([]cp.User, error) {
	if !actor.IsAdmin() {
		return nil, cp.ErrForbidden
	}
	return s.store.ListUsers(ctx, strings.ToLower(strings.TrimSpace(prefix)), after, limit)
}

// SetRole makes a user an admin or a player (admins only; nobody changes
// their own role, so the last admin cannot lock everyone out).
func (s *Service) SetRole(ctx context.Context, actor cp.User, username, role string) (cp.User, error) {
	if !actor.IsAdmin() {
		return cp.User{}, cp.ErrForbidden
	}
	if role != cp.RoleAdmin && role != cp.RolePlayer {
		return cp.User{}, cp.Invalid("role: %q or %q", cp.RoleAdmin, cp.RolePlayer)
	}
	target, err := s.store.UserByName(ctx, username)
	if err != nil {
		return cp.User{}, err
	}
	if target.ID == actor.ID {
		return cp.User{}, cp.Invalid("admins cannot change their own role")
	}
	if err := s.store.SetRole(ctx, target.ID, role); err != nil {
		return cp.User{}, fmt.Errorf("setting role: %w", err)
	}
	target.Role = role
	return target, nil
}

// UserByName looks a user up (admins only).
func (s *Service) UserByName(ctx context.Context, actor cp.User, username string) (cp.User, error) {
	if !actor.IsAdmin() {
		return cp.User{}, cp.ErrForbidden
	}
	return s.store.UserByName(ctx, username)
}

// Audit records an action an admin took.
func (s *Service) Audit(ctx context.Context, actor cp.User, action, target, detail string) {
	e := cp.AuditEntry{At: s.now(), ActorID: actor.ID, Actor: actor.Username, Action: action, Target: target, Detail: detail}
	if err := s.store.AddAudit(context.WithoutCancel(ctx), &e); err != nil {
		// The action happened; losing its record must be loud.
		s.log.Error("recording an admin action in the audit log", "action", action, "actor", actor.Username, "target", target, "err", err)
	}
}

// AuditLog pages the audit log backwards from before (0: the newest);
// admins only.
func (s *Service) AuditLog(ctx context.Context, actor cp.User, before uint64, limit int) ([]cp.AuditEntry, error) {
	if !actor.IsAdmin() {
		return nil, cp.ErrForbidden
	}
	return s.store.Audit(ctx, before, limit)
}

// Ban bars a user (admins only): their tokens are revoked, they leave every
// room (their nodes are cut off) and their chat sessions end.
func (s *Service) Ban(ctx context.Context, actor cp.User, username string) ([]cp.Event, error) {
	if !actor.IsAdmin() {
		return nil, cp.ErrForbidden
	}
	target, err := s.store.UserByName(ctx, username)
	if err != nil {
		return nil, err
	}
	if target.ID == actor.ID {
		return nil, cp.Invalid("admins cannot ban themselves")
	}
	now := s.now()
	if err := s.store.SetBanned(ctx, target.ID, &now); err != nil {
		return nil, fmt.Errorf("banning: %w", err)
	}
	rooms, err := s.store.RoomsOf(ctx, target.ID)
	if err != nil {
		return nil, err
	}
	events := []cp.Event{{Type: cp.EventUserBanned, UserID: target.ID, Username: target.Username, ActorID: actor.ID, At: now}}
	for _, roomID := range rooms {
		evs, err := s.Leave(ctx, target, roomID)
		if err != nil && !errors.Is(err, cp.ErrNotMember) && !errors.Is(err, cp.ErrRoomClosed) {
			return events, fmt.Errorf("removing a banned user from room %s: %w", roomID, err)
		}
		events = append(events, evs...)
	}
	return events, nil
}

// Unban lifts a ban (admins only); the user logs in again.
func (s *Service) Unban(ctx context.Context, actor cp.User, username string) error {
	if !actor.IsAdmin() {
		return cp.ErrForbidden
	}
	target, err := s.store.UserByName(ctx, username)
	if err != nil {
		return err
	}
	return s.store.SetBanned(ctx, target.ID, nil)
}

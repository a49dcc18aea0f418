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

const bcryptCost = 11

// dummyHash makes a login for an unknown user cost as much as a real one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("roomnet-timing-equalizer"), bcryptCost)

// Register creates a player account.
func (s *Service) Register(ctx context.Context, username, password string) (cp.User, error) {
	if !s.opts.OpenSignup {
		return cp.User{}, cp.ErrSignupDisabled
	}
	if err := validateUsername(username); err != nil {
		return cp.User{}, err
	}
	return s.createUser(ctx, username, password, cp.RolePlayer)
}

// createUser creates an account. The username rules beyond the pattern
// (reserved names) are Register's: the operator names the bootstrap admin.
func (s *Service) createUser(ctx context.Context, username, password, role string) (cp.User, error) {
	if err := validUsername(username); err != nil {
		return cp.User{}, err
	}
	if err := validatePassword(username, password); err != nil {
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
	if u.Banned(s.now()) {
		return "", cp.User{}, time.Time{}, u.BanError()
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
	u, _, err := s.AuthenticateSession(ctx, token)
	return u, err
}

// AuthenticateSession returns the user of a bearer token and when the
// token expires: what a long-lived session opened with it (a chat
// connection, an event stream) must not outlive.
func (s *Service) AuthenticateSession(ctx context.Context, token string) (cp.User, time.Time, error) {
	if token == "" || len(token) > 128 {
		return cp.User{}, time.Time{}, cp.ErrUnauthorized
	}
	t, err := s.store.Token(ctx, hashToken(token), s.now())
	if errors.Is(err, cp.ErrNotFound) {
		return cp.User{}, time.Time{}, cp.ErrUnauthorized
	}
	if err != nil {
		return cp.User{}, time.Time{}, fmt.Errorf("checking token: %w", err)
	}
	u, err := s.store.UserByID(ctx, t.UserID)
	if errors.Is(err, cp.ErrNotFound) {
		return cp.User{}, time.Time{}, cp.ErrUnauthorized
	}
	if err != nil {
		return cp.User{}, time.Time{}, fmt.Errorf("checking token: %w", err)
	}
	if u.Banned(s.now()) {
		return cp.User{}, time.Time{}, cp.ErrUnauthorized
	}
	return u, t.ExpiresAt, nil
}

// Logout revokes the token actor signed in with and publishes
// session_ended, which ends the chat sessions and the admin event streams
// opened with it.
func (s *Service) Logout(ctx context.Context, actor cp.User, token string) error {
	hash := hashToken(token)
	t, err := s.store.Token(ctx, hash, s.now())
	if err != nil && !errors.Is(err, cp.ErrNotFound) {
		return fmt.Errorf("looking up token: %w", err)
	}
	if err := s.store.DeleteToken(ctx, hash); err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	if t.UserID == 0 {
		return nil
	}
	s.publish(ctx, []cp.Event{{Type: cp.EventSessionEnded, UserID: t.UserID, Username: actor.Username, Session: cp.SessionID(token), At: s.now()}})
	return nil
}

// ListUsers lists accounts, optionally those whose name starts with
// prefix; moderators and admins.
func (s *Service) ListUsers(ctx context.Context, actor cp.User, prefix string, after uint64, limit int) ([]cp.User, error) {
	if !actor.CanModerate() {
		return nil, cp.ErrForbidden
	}
	return s.store.ListUsers(ctx, strings.ToLower(strings.TrimSpace(prefix)), after, limit)
}

// SetRole makes a user an admin, a moderator or a player (admins only;
// nobody changes their own role, so the last admin cannot lock everyone
// out).
func (s *Service) SetRole(ctx context.Context, actor cp.User, username, role string) (cp.User, error) {
	if !actor.IsAdmin() {
		return cp.User{}, cp.ErrForbidden
	}
	if role != cp.RoleAdmin && role != cp.RoleModerator && role != cp.RolePlayer {
		return cp.User{}, cp.Invalid("role: %q, %q or %q", cp.RoleAdmin, cp.RoleModerator, cp.RolePlayer)
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
	s.Audit(ctx, actor, cp.AuditRole, target.Username, role)
	return target, nil
}

// UserByName looks a user up (admins only).
func (s *Service) UserByName(ctx context.Context, actor cp.User, username string) (cp.User, error) {
	if !actor.IsAdmin() {
		return cp.User{}, cp.ErrForbidden
	}
	return s.store.UserByName(ctx, username)
}

// Audit records an action a moderator or admin took. The service audits
// its own staff actions (kicks and closes by staff, bans, roles,
// moderation).
func (s *Service) Audit(ctx context.Context, actor cp.User, action, target, detail string) {
	e := cp.AuditEntry{At: s.now(), ActorID: actor.ID, Actor: actor.Username, Action: action, Target: target, Detail: detail}
	if err := s.store.AddAudit(context.WithoutCancel(ctx), &e); err != nil {
		// The action happened; losing its record must be loud.
		s.log.Error("recording an admin action in the audit log", "action", action, "actor", actor.Username, "target", target, "err", err)
	}
}

// AuditLog pages the audit log backwards from before (0: the newest);
// moderators and admins.
func (s *Service) AuditLog(ctx context.Context, actor cp.User, before uint64, limit int) ([]cp.AuditEntry, error) {
	if !actor.CanModerate() {
		return nil, cp.ErrForbidden
	}
	return s.store.Audit(ctx, before, limit)
}

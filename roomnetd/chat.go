package roomnetd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/roomnet/roomnet/chat/chatserver"
	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/api"
	"github.com/roomnet/roomnet/controlplane/events"
	"github.com/roomnet/roomnet/controlplane/figures"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/controlplane/store"
)

// directory lets chat authenticate users and see room membership through
// the control plane.
type directory struct {
	svc   *service.Service
	store *store.Store
}

var _ chatserver.Directory = directory{}

func (d directory) Authenticate(ctx context.Context, token string) (chatserver.User, error) {
	u, expires, err := d.svc.AuthenticateSession(ctx, token)
	if err != nil {
		return chatserver.User{}, err
	}
	// The session id and expiry let chat end the connection when the
	// token is revoked (logout publishes session_ended) or runs out.
	return chatserver.User{ID: u.ID, Name: u.Username, Admin: u.IsAdmin(), Session: cp.SessionID(token), Expires: expires}, nil
}

func (d directory) UserByName(ctx context.Context, name string) (chatserver.User, error) {
	u, err := d.store.UserByName(ctx, name)
	if errors.Is(err, cp.ErrNotFound) {
		return chatserver.User{}, chatserver.ErrNoUser
	}
	if err != nil {
		return chatserver.User{}, err
	}
	return chatserver.User{ID: u.ID, Name: u.Username, Admin: u.IsAdmin()}, nil
}

func (d directory) RoomsOf(ctx context.Context, userID uint64) ([]string, error) {
	return d.store.RoomsOf(ctx, userID)
}

// publisher hands the control plane's events to chat synchronously (so a
// kicked member's chat is cut before the kick request returns) and to the
// in-process event hub, and counts joins for the dashboard.
type publisher struct {
	hub    *events.Hub
	chat   *chatserver.Server
	joins  *atomic.Int64
	remote *eventRelay // the other nodes' hubs (Redis); nil: one node
}

func (p publisher) Publish(ctx context.Context, evs ...cp.Event) {
	for _, e := range evs {
		if e.Type == cp.EventMemberJoined {
			p.joins.Add(1)
		}
	}
	if p.chat != nil {
		out := make([]chatserver.MembershipEvent, 0, len(evs))
		for _, e := range evs {
			out = append(out, chatserver.MembershipEvent{Type: string(e.Type), RoomID: e.RoomID, UserID: e.UserID, Username: e.Username, Session: e.Session})
		}
		p.chat.Apply(out)
	}
	p.hub.Publish(ctx, evs...)
	p.remote.publish(evs...)
}

// moderator is chat moderation for the admin routes, with chat's errors
// in the control plane's terms. history reads the chat store directly:
// moderators read rooms they are not members of.
type moderator struct {
	chat    *chatserver.Server
	history chatserver.Store
}

var (
	_ api.Moderator         = moderator{}
	_ service.Moderator     = moderator{}
	_ service.MessageReader = moderator{}
	_ service.ChatReader    = moderator{}
)

func (m moderator) ChatHistory(ctx context.Context, conv string, before, after uint64, limit int) ([]service.ChatMessage, error) {
	var msgs []chatserver.StoredMessage
	var err error
	if after > 0 {
		msgs, err = m.history.HistoryAfter(ctx, conv, after, limit)
	} else {
		msgs, err = m.history.HistoryBefore(ctx, conv, before, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("reading chat history: %w", err)
	}
	out := make([]service.ChatMessage, len(msgs))
	for i, sm := range msgs {
		out[i] = service.ChatMessage{Seq: sm.Seq, Kind: sm.Kind, SenderID: sm.SenderID, Sender: sm.SenderName, Body: sm.Body, At: sm.CreatedAt}
	}
	return out, nil
}

func (m moderator) DeleteMessage(ctx context.Context, conv string, seq uint64) error {
	err := m.chat.DeleteMessage(ctx, conv, seq)
	if errors.Is(err, chatserver.ErrNoMessage) {
		return fmt.Errorf("%w: no text message %s#%d", cp.ErrNotFound, conv, seq)
	}
	return err
}

func (m moderator) PurgeMessages(ctx context.Context, userID uint64, conv string) (int, error) {
	return m.chat.PurgeMessages(ctx, userID, conv)
}

func (m moderator) MessageText(ctx context.Context, conv string, seq uint64) (sender, body string, ok bool, err error) {
	return m.chat.MessageText(ctx, conv, seq)
}

func (m moderator) MuteOf(ctx context.Context, userID uint64) (until time.Time, reason string, ok bool, err error) {
	mu, ok, err := m.chat.MuteOf(ctx, userID)
	return mu.Until, mu.Reason, ok, err
}

func (m moderator) Mute(ctx context.Context, userID uint64, until time.Time, reason string) error {
	return m.chat.Mute(ctx, userID, until, reason)
}

func (m moderator) Unmute(ctx context.Context, userID uint64) error {
	return m.chat.Unmute(ctx, userID)
}

func (m moderator) MutedUntil(userID uint64) (time.Time, bool) { return m.chat.MutedUntil(userID) }

func (m moderator) Announce(ctx context.Context, conv, text string) (uint64, error) {
	seq, err := m.chat.Announce(ctx, conv, text)
	if errors.Is(err, chatserver.ErrBadAnnounce) {
		return 0, cp.Invalid("%s", strings.TrimPrefix(err.Error(), "chatserver: "))
	}
	if errors.Is(err, chatserver.ErrSeqUnavailable) {
		return 0, fmt.Errorf("%w: %w", cp.ErrUnavailable, err) // Redis down: 503, retry
	}
	return seq, err
}

// counts reads the dashboard's figures.
func (s *Server) counts(ctx context.Context) (figures.Counts, error) {
	open, err := s.store.CountOpenRooms(ctx)
	if err != nil {
		return figures.Counts{}, err
	}
	members, err := s.store.CountActiveMembers(ctx)
	if err != nil {
		return figures.Counts{}, err
	}
	c := figures.Counts{MembersActive: int(members), Joins: s.joins.Load()}
	for _, n := range open {
		c.RoomsOpen += n
	}
	f := s.Chat.Figures()
	c.PlayersOnline, c.Messages = f.OnlineUsers, f.Stored
	for _, r := range s.relays.List() {
		if r.Healthy {
			c.RelaysUp++
		}
	}
	return c, nil
}

// viewer tells the web pages whose session cookie a request carries:
// staff (moderators and admins) get the admin panel.
func (s *Server) viewer(r *http.Request) (signedIn, staff bool) {
	ck, err := r.Cookie(api.SessionCookie)
	if err != nil {
		return false, false
	}
	u, err := s.Service.Authenticate(r.Context(), ck.Value)
	if err != nil {
		return false, false
	}
	return true, u.CanModerate()
}

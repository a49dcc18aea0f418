package roomnetd

import (
	"context"
	"errors"
	"log/slog"

	"github.com/roomnet/roomnet/chat/chatserver"
	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/events"
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
	u, err := d.svc.Authenticate(ctx, token)
	if err != nil {
		return chatserver.User{}, err
	}
	return chatserver.User{ID: u.ID, Name: u.Username, Admin: u.IsAdmin()}, nil
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
// in-process event hub.
type publisher struct {
	hub  *events.Hub
	chat *chatserver.Server
	log  *slog.Logger
}

func (p publisher) Publish(ctx context.Context, evs ...cp.Event) {
	if p.chat != nil {
		out := make([]chatserver.MembershipEvent, 0, len(evs))
		for _, e := range evs {
			out = append(out, chatserver.MembershipEvent{Type: string(e.Type), RoomID: e.RoomID, UserID: e.UserID, Username: e.Username})
		}
		p.chat.Apply(out)
	}
	p.hub.Publish(ctx, evs...)
}

package service

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/roomnet/roomnet/chat"
	cp "github.com/roomnet/roomnet/controlplane"
)

// Moderators read a room's (or a lobby's) chat from the chat store, not
// through a chat connection: the chat server lets a connection join a
// room only as its member. Direct conversations stay private.
//
// Audit: opening a room's chat (a read with no cursor) is recorded as
// read_chat, once per opening; paging older and following newer
// messages with a cursor is not (a panel follows a room every few
// seconds; recording each poll would drown the log). Lobbies are public
// and not recorded.

// ChatReader is what a Moderator may also offer: a conversation's stored
// messages, deleted markers and tombstones included, as the store has
// them.
type ChatReader interface {
	// ChatHistory returns the newest limit messages below before (0: the
	// newest of all) or, when after > 0, the first limit above after;
	// oldest first either way.
	ChatHistory(ctx context.Context, conv string, before, after uint64, limit int) ([]ChatMessage, error)
}

// ChatMessage is one stored message.
type ChatMessage struct {
	Seq      uint64
	Kind     string // text, system, deleted, tombstone
	SenderID uint64
	Sender   string
	Body     string
	At       time.Time
}

// ChatPage is a page of a conversation's history.
type ChatPage struct {
	Conv     string
	RoomName string // for a room's conversation
	// Messages: newest first when paging back (no after), oldest first
	// when following (after > 0).
	Messages []ChatMessage
	// Next is the cursor of the next page: the before of the next older
	// page (0: none) or the after to follow with (the highest seq seen).
	Next uint64
}

// Chat reading limits.
const (
	ChatPageDefault = 50
	ChatPageMax     = 200
)

// ReadChat pages a room's or a lobby's chat for moderators and admins:
// back from before (0: the newest), or forward from after.
func (s *Service) ReadChat(ctx context.Context, actor cp.User, conv string, before, after uint64, limit int) (ChatPage, error) {
	mod, err := s.moderator(actor)
	if err != nil {
		return ChatPage{}, err
	}
	r, ok := mod.(ChatReader)
	if !ok {
		return ChatPage{}, fmt.Errorf("%w: reading chat history is not available", cp.ErrNotFound)
	}
	kind, ok := chat.ConvKind(conv)
	if !ok || len(conv) > maxConvLen || kind == chat.KindDirect {
		return ChatPage{}, cp.Invalid("conv: room:<id> or lobby:<name>, at most %d bytes (direct conversations are private)", maxConvLen)
	}
	if before > 0 && after > 0 {
		return ChatPage{}, cp.Invalid("before and after: one or the other")
	}
	if before > math.MaxInt64 || after > math.MaxInt64 {
		return ChatPage{}, cp.Invalid("before, after: at most %d", int64(math.MaxInt64))
	}
	switch {
	case limit == 0:
		limit = ChatPageDefault
	case limit < 0 || limit > ChatPageMax:
		return ChatPage{}, cp.Invalid("limit: 1 to %d", ChatPageMax)
	}
	page := ChatPage{Conv: conv}
	var room cp.Room
	if kind == chat.KindRoom {
		if room, err = s.store.Room(ctx, strings.TrimPrefix(conv, chat.KindRoom+":")); err != nil {
			return ChatPage{}, err
		}
		page.RoomName = room.Name
	}
	msgs, err := r.ChatHistory(ctx, conv, before, after, limit)
	if err != nil {
		return ChatPage{}, err
	}
	if after > 0 {
		page.Messages, page.Next = msgs, after
		if len(msgs) > 0 {
			page.Next = msgs[len(msgs)-1].Seq
		}
	} else {
		page.Messages = make([]ChatMessage, len(msgs))
		for i, m := range msgs {
			page.Messages[len(msgs)-1-i] = m
		}
		if len(msgs) == limit && msgs[0].Seq > 1 {
			page.Next = msgs[0].Seq
		}
	}
	if kind == chat.KindRoom && before == 0 && after == 0 {
		s.Audit(ctx, actor, cp.AuditReadChat, room.ID, fmt.Sprintf("room %q", room.Name))
	}
	return page, nil
}

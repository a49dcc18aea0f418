package chatserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/roomnet/roomnet/chat"
)

// ErrNoPurge reports a store that cannot list a sender's messages.
var ErrNoPurge = errors.New("chatserver: this store cannot purge messages")

// purgeBatch is how many messages a purge reads at a time.
const purgeBatch = 500

// PurgeMessages deletes every text message of a sender, in conv when it
// is not empty, exactly as DeleteMessage deletes one: stored as deleted
// without its body, and a deleted frame to every subscriber of its
// conversation. It reports how many it deleted; a sender with none is 0.
// Messages the sender stores while the purge runs may stay.
func (s *Server) PurgeMessages(ctx context.Context, senderID uint64, conv string) (int, error) {
	f, ok := s.store.(messageFinder)
	if !ok {
		return 0, ErrNoPurge
	}
	if conv != "" {
		if _, ok := chat.ConvKind(conv); !ok {
			return 0, fmt.Errorf("%w: %q is not a conversation", ErrNoMessage, conv)
		}
	}
	n := 0
	for {
		msgs, err := f.TextMessagesBy(ctx, senderID, conv, purgeBatch)
		if err != nil {
			return n, fmt.Errorf("listing messages to purge: %w", err)
		}
		if len(msgs) == 0 {
			return n, nil
		}
		progress := false
		for _, m := range msgs {
			err := s.DeleteMessage(ctx, m.Conv, m.Seq)
			if errors.Is(err, ErrNoMessage) {
				continue // deleted meanwhile
			}
			if err != nil {
				return n, err
			}
			n++
			progress = true
		}
		if !progress {
			return n, nil
		}
	}
}

// MessageText returns a message's sender and body, for the audit log of
// a delete; ok is false when there is no such text message.
func (s *Server) MessageText(ctx context.Context, conv string, seq uint64) (sender, body string, ok bool, err error) {
	f, isFinder := s.store.(messageFinder)
	if !isFinder {
		return "", "", false, nil
	}
	if _, valid := chat.ConvKind(conv); !valid || seq == 0 || seq > chat.MaxSeq {
		return "", "", false, nil
	}
	m, found, err := f.Message(ctx, conv, seq)
	if err != nil || !found || m.Kind != chat.KindText {
		return "", "", false, err
	}
	return m.SenderName, m.Body, true, nil
}

// MuteOf returns a user's mute, when one lasts, with its reason.
func (s *Server) MuteOf(ctx context.Context, userID uint64) (Mute, bool, error) {
	if _, ok := s.MutedUntil(userID); !ok {
		return Mute{}, false, nil
	}
	return s.mutes.stored(ctx, userID)
}

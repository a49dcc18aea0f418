package chatserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/roomnet/roomnet/chat"
)

// ErrNoMessage reports a delete of a message that does not exist or is
// not a text message (system messages, tombstones and deleted ones stay).
var ErrNoMessage = errors.New("chatserver: no such text message")

type muteNews struct {
	UserID uint64    `json:"user_id"`
	Until  time.Time `json:"until"` // zero: lifted
}

// DeleteMessage deletes a text message for everyone: it is stored as
// deleted without its body, cached pages holding it are dropped on every
// node, and every subscriber gets a deleted frame on the priority lane.
func (s *Server) DeleteMessage(ctx context.Context, conv string, seq uint64) error {
	if _, ok := chat.ConvKind(conv); !ok || seq == 0 || seq > chat.MaxSeq {
		// No conversation holds it: a clean not-found, never a store error.
		return fmt.Errorf("%w: %q#%d is not a message id", ErrNoMessage, conv, seq)
	}
	ok, err := s.store.MarkDeleted(ctx, conv, seq)
	if err != nil {
		return fmt.Errorf("deleting message: %w", err)
	}
	if !ok {
		return ErrNoMessage
	}
	s.metrics.deleted.Inc()
	b, err := chat.Encode(chat.Frame{Type: chat.TypeDeleted, Conv: conv, Seq: seq})
	if err != nil {
		return err
	}
	// Stored as deleted: history, sync and later pulls no longer show it,
	// whatever the bus does.
	if sent := s.publishConv(conv, b, true); sent != nil {
		<-sent
	}
	return nil
}

// Mute bars a user from sending on every node until until; it survives
// restarts. A send while muted is refused with the muted code.
func (s *Server) Mute(ctx context.Context, userID uint64, until time.Time, reason string) error {
	if !until.After(time.Now()) {
		return errors.New("chatserver: mute: until must be in the future")
	}
	if err := s.mutes.save(ctx, Mute{UserID: userID, Until: until.UTC(), Reason: reason}); err != nil {
		return err
	}
	return s.publishMute(ctx, muteNews{UserID: userID, Until: until.UTC()})
}

// Unmute lifts a user's mute on every node.
func (s *Server) Unmute(ctx context.Context, userID uint64) error {
	if err := s.mutes.remove(ctx, userID); err != nil {
		return err
	}
	return s.publishMute(ctx, muteNews{UserID: userID})
}

func (s *Server) publishMute(ctx context.Context, n muteNews) error {
	s.mutes.apply(n) // this node at once, whatever the bus does
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if err := s.bus.Publish(ctx, topicMod, b); err != nil {
		s.log.Warn("publishing a mute; other nodes learn it at their next start", "err", err)
	}
	return nil
}

// MutedUntil reports until when a user is muted.
func (s *Server) MutedUntil(userID uint64) (time.Time, bool) { return s.mutes.of(userID) }

package chatserver

import (
	"context"

	"github.com/roomnet/roomnet/chat"
)

// The store's side of moderation beyond single deletes: a sender's text
// messages, and one message with its body (for the audit log).

// messageFinder is what purges and delete audits need of a store beyond
// Store; GormStore has it, and a store without it answers
// ErrNoPurge.
type messageFinder interface {
	// TextMessagesBy lists up to limit text messages of a sender, in conv
	// when it is not empty, oldest first.
	TextMessagesBy(ctx context.Context, senderID uint64, conv string, limit int) ([]StoredMessage, error)
	// Message loads one message.
	Message(ctx context.Context, conv string, seq uint64) (StoredMessage, bool, error)
}

var _ messageFinder = (*GormStore)(nil)

// TextMessagesBy implements messageFinder. (It scans: there is no index
// by sender alone, and purges are rare.)
func (s *GormStore) TextMessagesBy(ctx context.Context, senderID uint64, conv string, limit int) ([]StoredMessage, error) {
	q := s.db.WithContext(ctx).Where("sender_id = ? AND kind = ?", senderID, chat.KindText)
	if conv != "" {
		q = q.Where("conv = ?", conv)
	}
	var out []StoredMessage
	err := q.Order("created_at, conv, seq").Limit(limit).Find(&out).Error
	return out, err
}

// Message implements messageFinder.
func (s *GormStore) Message(ctx context.Context, conv string, seq uint64) (StoredMessage, bool, error) {
	var out []StoredMessage
	err := s.db.WithContext(ctx).Where("conv = ? AND seq = ?", conv, seq).Limit(1).Find(&out).Error
	if err != nil || len(out) == 0 {
		return StoredMessage{}, false, err
	}
	return out[0], true, nil
}

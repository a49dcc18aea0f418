package chatserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/internal/gormdb"
)

// StoredMessage is a message row. (conv, seq) is the key; (conv,
// sender_id, client_msg_id) is unique so a retried send stores nothing twice.
type StoredMessage struct {
	Conv        string `gorm:"primaryKey;size:80"`
	Seq         uint64 `gorm:"primaryKey;autoIncrement:false"`
	Kind        string `gorm:"size:16;not null"`
	SenderID    uint64 `gorm:"uniqueIndex:idx_chat_dedupe,priority:2;not null"`
	SenderName  string `gorm:"size:32"`
	ClientMsgID string `gorm:"uniqueIndex:idx_chat_dedupe,priority:3;size:64;not null"`
	Body        string
	CreatedAt   time.Time
	Critical    bool
	// ConvDedupe repeats Conv for the dedupe index (gorm cannot put a
	// primary key column first in a second index portably).
	ConvDedupe string `gorm:"uniqueIndex:idx_chat_dedupe,priority:1;size:80;not null"`
}

// TableName pins the table name.
func (StoredMessage) TableName() string { return "chat_messages" }

// Cursor is a user's position in a conversation.
type Cursor struct {
	UserID    uint64 `gorm:"primaryKey;autoIncrement:false"`
	Conv      string `gorm:"primaryKey;size:80"`
	Delivered uint64 `gorm:"column:delivered_seq"`
	Read      uint64 `gorm:"column:read_seq"`
}

// TableName pins the table name.
func (Cursor) TableName() string { return "chat_cursors" }

// Store is everything a chat node keeps: messages, read positions and
// mutes. Each part of the node takes only the piece it uses (a
// MessageStore, CursorStore, MuteStore or narrower, declared beside it);
// GormStore implements them all.
type Store interface {
	MessageStore
	CursorStore
	MuteStore
	Close() error
}

// MessageStore keeps messages under their (conversation, seq).
type MessageStore interface {
	// Append writes messages atomically: all or none. It fails with
	// ErrDuplicate when a message's client_msg_id is stored, ErrSeqTaken
	// when its (conv, seq) is held by another message.
	Append(ctx context.Context, msgs []StoredMessage) error
	MaxSeq(ctx context.Context, conv string) (uint64, error)
	MaxSeqs(ctx context.Context, convs []string) (map[string]uint64, error)
	FindByClientID(ctx context.Context, conv string, sender uint64, clientMsgID string) (StoredMessage, bool, error)
	// HistoryBefore returns the newest limit messages below before (0:
	// the newest of all), oldest first.
	HistoryBefore(ctx context.Context, conv string, before uint64, limit int) ([]StoredMessage, error)
	// HistoryAfter returns the first limit messages above after (0: from
	// the first message), oldest first.
	HistoryAfter(ctx context.Context, conv string, after uint64, limit int) ([]StoredMessage, error)
	// DirectConvs lists the direct conversations of a user that hold messages.
	DirectConvs(ctx context.Context, userID uint64) ([]string, error)
	// MarkDeleted turns a text message into a deleted one without a body;
	// it reports whether there was such a message.
	MarkDeleted(ctx context.Context, conv string, seq uint64) (bool, error)
}

// Mute bars a user from sending until Until.
type Mute struct {
	UserID uint64 `gorm:"primaryKey;autoIncrement:false"`
	Until  time.Time
	Reason string `gorm:"size:200"`
}

// TableName pins the table name.
func (Mute) TableName() string { return "chat_mutes" }

// ErrDuplicate reports a message whose client_msg_id was already stored.
var ErrDuplicate = errors.New("chat: duplicate client message id")

// ErrSeqTaken reports a message whose (conv, seq) is already held by
// another message: another writer stored it (with several nodes, a shared
// sequencer that lost its counters hands out a stored seq once). Nothing
// of the batch is stored; the seq is not the writer's to tombstone.
var ErrSeqTaken = errors.New("chat: sequence number already stored")

// GormStore is the Store on gorm: SQLite (pure Go, WAL) by default,
// PostgreSQL when scaled out.
type GormStore struct {
	db *gorm.DB
}

var (
	_ Store         = (*GormStore)(nil)
	_ MessageStore  = (*GormStore)(nil)
	_ CursorStore   = (*GormStore)(nil)
	_ MuteStore     = (*GormStore)(nil)
	_ commitStore   = (*GormStore)(nil)
	_ historyReader = (*GormStore)(nil)
	_ seqFloorStore = (*GormStore)(nil)
)

// OpenStore opens driver ("sqlite" or "postgres") at dsn and migrates.
func OpenStore(driver, dsn string) (*GormStore, error) {
	db, err := gormdb.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening chat store: %w", err)
	}
	if err := gormdb.Migrate(db, &StoredMessage{}, &Cursor{}, &Mute{}); err != nil {
		return nil, fmt.Errorf("migrating chat store: %w", err)
	}
	return &GormStore{db: db}, nil
}

// Close closes the database.
func (s *GormStore) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// appendRows is the most rows one INSERT of Append carries: a group
// commit's 256 in one statement (10 columns each, far below the engines'
// parameter limits).
const appendRows = 256

// AppendSkippingTaken writes msgs, leaving out every row whose seq or
// client message id is stored already, with no error for those: for
// tombstones, where a seq taken meanwhile (a slow writer's message,
// another node's tombstone) needs none. Up to appendRows rows a
// statement, each statement atomic.
func (s *GormStore) AppendSkippingTaken(ctx context.Context, msgs []StoredMessage) error {
	for i := range msgs {
		msgs[i].ConvDedupe = msgs[i].Conv
	}
	return s.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(msgs, appendRows).Error
}

// Append implements MessageStore.
func (s *GormStore) Append(ctx context.Context, msgs []StoredMessage) error {
	for i := range msgs {
		msgs[i].ConvDedupe = msgs[i].Conv
	}
	var err error
	if len(msgs) <= appendRows {
		// One INSERT is atomic by itself: no BEGIN and COMMIT round
		// trips on the ack path.
		err = s.db.WithContext(ctx).Create(msgs).Error
	} else {
		err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			return tx.CreateInBatches(msgs, appendRows).Error
		})
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return s.whichDuplicate(ctx, msgs)
	}
	return err
}

// whichDuplicate tells the two unique keys apart after a refused batch
// (the engines' errors do not portably name the constraint): when a
// message's client id is stored, the batch repeated a send (ErrDuplicate);
// otherwise its seq was taken (ErrSeqTaken). A message whose send and seq
// are both stored is a repeat.
func (s *GormStore) whichDuplicate(ctx context.Context, msgs []StoredMessage) error {
	for _, m := range msgs {
		_, found, err := s.FindByClientID(ctx, m.Conv, m.SenderID, m.ClientMsgID)
		if err != nil {
			return fmt.Errorf("telling a duplicate send from a taken seq: %w", err)
		}
		if found {
			return ErrDuplicate
		}
	}
	return ErrSeqTaken
}

// MaxSeq implements MessageStore.
func (s *GormStore) MaxSeq(ctx context.Context, conv string) (uint64, error) {
	var n *uint64
	err := s.db.WithContext(ctx).Model(&StoredMessage{}).Where("conv = ?", conv).Select("max(seq)").Scan(&n).Error
	if err != nil || n == nil {
		return 0, err
	}
	return *n, nil
}

// MaxSeqs implements MessageStore.
func (s *GormStore) MaxSeqs(ctx context.Context, convs []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	if len(convs) == 0 {
		return out, nil
	}
	type row struct {
		Conv string
		M    uint64
	}
	var rows []row
	err := s.db.WithContext(ctx).Model(&StoredMessage{}).Select("conv, max(seq) as m").
		Where("conv IN ?", convs).Group("conv").Scan(&rows).Error
	for _, r := range rows {
		out[r.Conv] = r.M
	}
	return out, err
}

// FindByClientID implements MessageStore.
func (s *GormStore) FindByClientID(ctx context.Context, conv string, sender uint64, id string) (StoredMessage, bool, error) {
	var m StoredMessage
	err := s.db.WithContext(ctx).Where("conv_dedupe = ? AND sender_id = ? AND client_msg_id = ?", conv, sender, id).Limit(1).Find(&m).Error
	if err != nil {
		return m, false, err
	}
	return m, m.Seq != 0, nil
}

// HistoryAfter implements MessageStore.
func (s *GormStore) HistoryAfter(ctx context.Context, conv string, after uint64, limit int) ([]StoredMessage, error) {
	if after > chat.MaxSeq {
		return nil, nil
	}
	var out []StoredMessage
	err := s.db.WithContext(ctx).Where("conv = ? AND seq > ?", conv, after).Order("seq ASC").Limit(limit).Find(&out).Error
	return out, err
}

// HistoryBefore implements MessageStore.
func (s *GormStore) HistoryBefore(ctx context.Context, conv string, before uint64, limit int) ([]StoredMessage, error) {
	var out []StoredMessage
	q := s.db.WithContext(ctx).Where("conv = ?", conv)
	if before > chat.MaxSeq {
		before = 0 // every seq is below it
	}
	if before > 0 {
		q = q.Where("seq < ?", before)
	}
	if err := q.Order("seq DESC").Limit(limit).Find(&out).Error; err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// SaveCursors implements CursorStore.
func (s *GormStore) SaveCursors(ctx context.Context, cs []Cursor) error {
	if len(cs) == 0 {
		return nil
	}
	return s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns: []clause.Column{{Name: "user_id"}, {Name: "conv"}},
		DoUpdates: clause.Assignments(map[string]any{
			"delivered_seq": gorm.Expr("CASE WHEN excluded.delivered_seq > chat_cursors.delivered_seq THEN excluded.delivered_seq ELSE chat_cursors.delivered_seq END"),
			"read_seq":      gorm.Expr("CASE WHEN excluded.read_seq > chat_cursors.read_seq THEN excluded.read_seq ELSE chat_cursors.read_seq END"),
		}),
	}).Create(&cs).Error
}

// Cursors implements CursorStore.
func (s *GormStore) Cursors(ctx context.Context, userID uint64) ([]Cursor, error) {
	var out []Cursor
	err := s.db.WithContext(ctx).Where("user_id = ?", userID).Find(&out).Error
	return out, err
}

// DirectConvs implements MessageStore.
func (s *GormStore) DirectConvs(ctx context.Context, userID uint64) ([]string, error) {
	var out []string
	id := fmt.Sprint(userID)
	err := s.db.WithContext(ctx).Model(&StoredMessage{}).Distinct("conv").
		Where("conv LIKE ? OR conv LIKE ?", "dm:"+id+":%", "dm:%:"+id).Pluck("conv", &out).Error
	return out, err
}

// MarkDeleted implements MessageStore.
func (s *GormStore) MarkDeleted(ctx context.Context, conv string, seq uint64) (bool, error) {
	r := s.db.WithContext(ctx).Model(&StoredMessage{}).
		Where("conv = ? AND seq = ? AND kind = ?", conv, seq, chat.KindText).
		Updates(map[string]any{"kind": chat.KindDeleted, "body": ""})
	return r.RowsAffected > 0, r.Error
}

// SaveMute implements MuteStore.
func (s *GormStore) SaveMute(ctx context.Context, m Mute) error {
	return s.db.WithContext(ctx).Save(&m).Error
}

// DeleteMute implements MuteStore.
func (s *GormStore) DeleteMute(ctx context.Context, userID uint64) error {
	return s.db.WithContext(ctx).Where("user_id = ?", userID).Delete(&Mute{}).Error
}

// Mutes implements MuteStore.
func (s *GormStore) Mutes(ctx context.Context, now time.Time) ([]Mute, error) {
	var out []Mute
	err := s.db.WithContext(ctx).Where("until > ?", now).Find(&out).Error
	return out, err
}

package chatserver

import (
	"context"
	"fmt"
	"time"

	"github.com/roomnet/roomnet/chat"
)

// The read side: history pages, sync and read positions.

// seqInRange reports whether seq is at most conv's newest seq: what this
// node published, else what the store holds.
func (s *Server) seqInRange(ctx context.Context, conv string, seq uint64) (bool, error) {
	if seq > chat.MaxSeq {
		return false, nil
	}
	if seq <= s.pages.head(conv) {
		return true, nil
	}
	top, err := s.store.MaxSeq(ctx, conv)
	return seq <= top, err
}

func (s *Server) handleCursor(ctx context.Context, c *conn, f chat.Frame) {
	if f.Seq == 0 {
		return
	}
	if !s.access(c, f.Conv) {
		c.fail(f, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	}
	switch ok, err := s.seqInRange(ctx, f.Conv, f.Seq); {
	case err != nil:
		c.fail(f, chat.ErrUnavailable, "position not saved; retry")
		return
	case !ok:
		c.fail(f, chat.ErrInvalid, fmt.Sprintf("seq %d is above the newest seq of %s", f.Seq, f.Conv))
		return
	}
	s.cursors.raise(c.user.ID, f.Conv, f.Seq, f.Type == chat.TypeRead)
	if kind, _ := chat.ConvKind(f.Conv); kind == chat.KindDirect && f.Type == chat.TypeAck {
		b, err := chat.Encode(chat.Frame{Type: chat.TypeReceipt, Conv: f.Conv, Seq: f.Seq, By: c.user.Name})
		if err == nil {
			s.publishConv(f.Conv, b, false)
		}
	}
}

func (s *Server) flushCursorsLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CursorFlush)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			s.cursors.flush()
			return
		case <-t.C:
			s.cursors.flush()
		}
	}
}

func (s *Server) handleHistory(ctx context.Context, c *conn, f chat.Frame) {
	if !s.access(c, f.Conv) {
		c.fail(f, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	}
	if f.Before > chat.MaxSeq || f.After > chat.MaxSeq {
		c.fail(f, chat.ErrInvalid, "before and after: at most 2^63-1")
		return
	}
	limit := f.Limit
	if limit <= 0 || limit > s.opts.HistoryMax {
		limit = s.opts.HistoryMax
	}
	// after wins over before; after 0 is the start, before 0 the end.
	var msgs []StoredMessage
	var err error
	if f.HasAfter {
		msgs, err = s.store.HistoryAfter(ctx, f.Conv, f.After, limit+1)
	} else {
		msgs, err = s.store.HistoryBefore(ctx, f.Conv, f.Before, limit+1)
	}
	if err != nil {
		c.fail(f, chat.ErrUnavailable, "history unavailable; retry")
		return
	}
	more := len(msgs) > limit
	if more {
		if f.HasAfter {
			msgs = msgs[:limit]
		} else {
			msgs = msgs[1:]
		}
	}
	out := make([]chat.Message, len(msgs))
	for i, m := range msgs {
		out[i] = toWire(m)
	}
	c.sendFrame(chat.Frame{Type: chat.TypePage, Ref: f.Ref, Conv: f.Conv, Messages: out, HasMore: more})
}

func (s *Server) handleSync(ctx context.Context, c *conn, f chat.Frame) {
	if len(f.Positions) > s.opts.MaxPositions {
		c.fail(f, chat.ErrInvalid, fmt.Sprintf("positions: at most %d conversations", s.opts.MaxPositions))
		return
	}
	for conv, pos := range f.Positions {
		if pos > chat.MaxSeq {
			c.fail(f, chat.ErrInvalid, fmt.Sprintf("positions: %s: at most 2^63-1", conv))
			return
		}
	}
	cursors, err := s.cursors.of(ctx, c.user.ID)
	if err != nil {
		c.fail(f, chat.ErrUnavailable, "sync unavailable; retry")
		return
	}
	convs := map[string]bool{}
	for _, conv := range c.convList() {
		convs[conv] = true
	}
	// Direct conversations with messages are the user's.
	dms, err := s.store.DirectConvs(ctx, c.user.ID)
	if err != nil {
		c.fail(f, chat.ErrUnavailable, "sync unavailable; retry")
		return
	}
	for _, conv := range dms {
		c.allow(conv)
		convs[conv] = true
	}
	// Positions never add a conversation: a direct one exists once it
	// holds a message (listed above) or was opened with open_dm.
	list := make([]string, 0, len(convs))
	for conv := range convs {
		list = append(list, conv)
	}
	maxes, err := s.store.MaxSeqs(ctx, list)
	if err != nil {
		c.fail(f, chat.ErrUnavailable, "sync unavailable; retry")
		return
	}
	out := make([]chat.ConvState, 0, len(list))
	for _, conv := range list {
		st := convState(conv, maxes[conv], cursors[conv].Read)
		pos := f.Positions[conv]
		if st.MaxSeq > pos {
			msgs, err := s.store.HistoryBefore(ctx, conv, 0, s.opts.SyncMessages)
			if err != nil {
				c.fail(f, chat.ErrUnavailable, "sync unavailable; retry")
				return
			}
			for _, m := range msgs {
				if m.Seq > pos {
					st.Messages = append(st.Messages, toWire(m))
				}
			}
		}
		out = append(out, st)
	}
	c.sendFrame(chat.Frame{Type: chat.TypeSynced, Ref: f.Ref, Convs: out})
}

package chatserver

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/roomnet/roomnet/chat"
)

// Sends: checks, dedupe, seq allocation, group commit, publication.

func (s *Server) handleSend(ctx context.Context, c *conn, f chat.Frame) {
	ref := f.ClientMsgID
	switch {
	case f.ClientMsgID == "" || len(f.ClientMsgID) > 64:
		c.fail(f, chat.ErrInvalid, "client_msg_id: 1 to 64 bytes")
		return
	case !s.access(c, f.Conv):
		c.fail(f, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	case f.Body == "" || !utf8.ValidString(f.Body):
		c.fail(f, chat.ErrInvalid, "body: non-empty UTF-8 text")
		return
	case len(f.Body) > s.opts.MaxBody:
		c.fail(f, chat.ErrTooLarge, fmt.Sprintf("body: at most %d bytes", s.opts.MaxBody))
		return
	}
	key := dedupeKey{f.Conv, c.user.ID, f.ClientMsgID}
	reply := func(m StoredMessage, err error) {
		if err != nil {
			failSend(c, f, err)
			return
		}
		c.sendFrame(chat.Frame{Type: chat.TypeSent, Ref: ref, Conv: m.Conv, ClientMsgID: m.ClientMsgID, Seq: m.Seq, TS: m.CreatedAt.UnixMilli()})
	}
	// A retry of a send that is still being written waits for it.
	if !s.dedupe.begin(key, reply) {
		return
	}
	finish := func(m StoredMessage, err error) { s.dedupe.finish(key, m, err) }
	// A retry of a send that was stored gets the same seq, nothing new:
	// from memory when this node stored it lately, else the store's
	// unique index refuses the copy and append answers with the seq
	// stored (no lookup on every send: it was a fifth of a busy node's CPU).
	if m, ok := s.dedupe.stored(key); ok {
		s.metrics.dedupes.Inc()
		finish(m, nil)
		return
	}
	if until, muted := s.mutes.of(c.user.ID); muted {
		s.dedupe.drop(key)
		c.sendFrame(chat.Frame{Type: chat.TypeError, Ref: ref, Conv: f.Conv, Until: until.UnixMilli(),
			Error: &chat.ErrorDetail{Code: chat.ErrMuted, Message: "muted by a moderator until " + until.UTC().Format(time.RFC3339)}})
		return
	}
	if lim, now := s.sends.of(c.user.ID), time.Now(); !lim.AllowN(now, 1) {
		// Not a violation: the frame limiter bounds how often this can be
		// answered, and the client retries after the hint.
		s.dedupe.drop(key)
		failAfter(c, f, chat.ErrRateLimited, "sending too fast; retry later", retryAfter(lim, now))
		return
	}
	s.append(ctx, StoredMessage{
		Conv: f.Conv, Kind: chat.KindText, SenderID: c.user.ID, SenderName: c.user.Name,
		ClientMsgID: f.ClientMsgID, Body: f.Body,
	}, false, finish)
}

// append allocates a seq, group-commits the message and, once it is
// durable, calls done and publishes it. With published set it publishes
// first and calls done once the bus has taken the message: a system
// message then reaches the members before whatever its caller does next
// (a room's closing message before the removal).
func (s *Server) append(ctx context.Context, m StoredMessage, published bool, done func(StoredMessage, error)) {
	start := time.Now()
	seq, err := s.seq.Next(ctx, m.Conv)
	s.metrics.seqLatency.Observe(time.Since(start).Seconds())
	if errors.Is(err, ErrSeqUnavailable) {
		// Redis is down: counted, and reported by the node's health.
		s.metrics.seqUnavailable.Inc()
		s.log.Debug("allocating seq", "conv", m.Conv, "err", err)
		done(StoredMessage{}, err)
		return
	}
	if err != nil {
		s.log.Error("allocating seq", "conv", m.Conv, "err", err)
		done(StoredMessage{}, err)
		return
	}
	m.Seq = seq
	m.CreatedAt = time.Now().UTC()
	start = time.Now()
	s.commit.submit(&pending{msg: m, done: func(stored StoredMessage, err error) {
		if errors.Is(err, ErrDuplicate) {
			// A concurrent retry on another node won: answer with its seq.
			found, ok, ferr := s.store.FindByClientID(context.Background(), m.Conv, m.SenderID, m.ClientMsgID)
			if ferr == nil && ok {
				s.metrics.dedupes.Inc()
				s.dedupe.remember(found)
				done(found, nil)
				return
			}
		}
		if err != nil {
			done(StoredMessage{}, err)
			return
		}
		s.metrics.stored.Inc()
		s.metrics.commitLatency.Observe(time.Since(start).Seconds())
		if stored.SenderID != 0 {
			s.dedupe.remember(stored)
		}
		if published {
			// Queued here, in order; done waits elsewhere, for the
			// committer must not wait on the bus.
			if sent := s.publishMessage(stored, true); sent != nil {
				go func() { <-sent; done(stored, nil) }()
				return
			}
			done(stored, nil)
			return
		}
		// Acked first: publishing is no part of durability.
		done(stored, nil)
		s.publishMessage(stored, false)
	}})
}

func toWire(m StoredMessage) chat.Message {
	return chat.Message{
		Conv: m.Conv, Seq: m.Seq, Kind: m.Kind, From: m.SenderName, ClientMsgID: m.ClientMsgID,
		Body: m.Body, TS: m.CreatedAt.UnixMilli(), Critical: m.Critical,
	}
}

// publishMessage hands m to the bus; with track set it returns a channel
// closed once the bus has taken it (or refused it and this node's clients
// have it), nil when that is done already.
func (s *Server) publishMessage(m StoredMessage, track bool) <-chan struct{} {
	wm := toWire(m)
	b, err := chat.Encode(chat.Frame{Type: chat.TypeMsg, Msg: &wm})
	if err != nil {
		s.log.Error("encoding message", "err", err)
		return nil
	}
	return s.publishConv(m.Conv, b, track)
}

// publishConv publishes a frame of a conversation (a message, a deletion,
// a receipt). Every one goes the same way, through the publisher when the
// bus is remote, so that a conversation's frames keep their order (a
// deletion never overtakes its message). When the bus refuses, this
// node's subscribers get the frame straight away; the other nodes'
// clients pull what they missed when the bus is back (catchUp) or at
// their next message or sync. With track set it returns what
// publisher.publish returns; an in-process bus has published already.
func (s *Server) publishConv(conv string, b []byte, track bool) <-chan struct{} {
	if s.pub != nil {
		return s.pub.publish(topicConv+conv, b, track)
	}
	if err := s.bus.Publish(context.Background(), topicConv+conv, b); err != nil {
		s.log.Warn("publishing on the bus; other nodes' clients will pull it", "conv", conv, "err", err)
		s.onBus(topicConv+conv, b)
	}
	return nil
}

// ErrBadAnnounce reports an announcement to a conversation that cannot
// take one, or with a bad text.
var ErrBadAnnounce = errors.New("chatserver: announce")

// Announce posts a critical system message to conv (a room or a lobby):
// stored and ordered like any message, pushed on the priority lane even
// in storm mode. It returns once the message is durable.
func (s *Server) Announce(ctx context.Context, conv, text string) (uint64, error) {
	if kind, ok := chat.ConvKind(conv); !ok || kind == chat.KindDirect {
		return 0, fmt.Errorf("%w: to %q: want a room or a lobby", ErrBadAnnounce, conv)
	}
	if text == "" || len(text) > s.opts.MaxBody || !utf8.ValidString(text) {
		return 0, fmt.Errorf("%w: 1 to %d bytes of UTF-8 text", ErrBadAnnounce, s.opts.MaxBody)
	}
	return s.appendSystem(ctx, conv, text)
}

// appendSystem stores a critical system message and returns its seq once
// it is durable and published.
func (s *Server) appendSystem(ctx context.Context, conv, text string) (uint64, error) {
	type result struct {
		m   StoredMessage
		err error
	}
	done := make(chan result, 1)
	s.append(ctx, StoredMessage{
		Conv: conv, Kind: chat.KindSystem, ClientMsgID: "sys-" + newSession() + newSession(),
		Body: text, Critical: true,
	}, true, func(m StoredMessage, err error) { done <- result{m, err} })
	select {
	case r := <-done:
		return r.m.Seq, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

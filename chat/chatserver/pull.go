package chatserver

import (
	"context"
	"fmt"
	"sync"

	"github.com/gorilla/websocket"
	"golang.org/x/sync/singleflight"

	"github.com/roomnet/roomnet/chat"
)

// pullsInFlight bounds the pull answers queued for one connection.
const pullsInFlight = 4

// pageBytes bounds the messages' bytes in one page.
const pageBytes = 256 << 10

// cacheBytes bounds the bytes of the pages kept for reuse.
const cacheBytes = 32 << 20

// pages answers pulls. After a notify most of a lobby's subscribers ask
// for the same range, so a page is read once, encoded once, compressed
// once per codec and prepared once, and every receiver writes the same
// bytes. Concurrent identical pulls wait for the first one.
type pages struct {
	s     *Server
	group singleflight.Group

	mu      sync.Mutex
	entries map[pageKey]*page
	bytes   int               // of the entries
	heads   map[string]uint64 // newest seq published per conversation
	// gen counts forgets per conversation: a page whose build began
	// before a forget (a deletion) may hold the old body and is not kept.
	gen map[string]uint64
}

type pageKey struct {
	conv  string
	after uint64
	limit int
	codec byte
}

type page struct {
	frame outFrame
	top   uint64 // newest seq in the page
	full  bool   // has_more: the range is complete and can never change
	// whole: the seqs run from after+1 without a hole. A page with a hole
	// (a seq allocated earlier but committed later) is never kept: the
	// next pull must see the seq that fills it.
	whole bool
	size  int // bytes on the wire
}

// head returns the newest seq of conv published on this node (0: none yet).
func (p *pages) head(conv string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heads[conv]
}

// published records the newest seq of conv seen by this node.
func (p *pages) published(conv string, seq uint64) {
	p.mu.Lock()
	if seq > p.heads[conv] {
		p.heads[conv] = seq
	}
	p.mu.Unlock()
}

// forget drops what is kept for conv.
func (p *pages) forget(conv string) {
	p.mu.Lock()
	p.gen[conv]++
	delete(p.heads, conv)
	for k, e := range p.entries {
		if k.conv == conv {
			delete(p.entries, k)
			p.bytes -= e.size
		}
	}
	p.mu.Unlock()
}

// cached returns the kept page of k if it still answers a pull capped
// at top (0: no cap).
func (p *pages) cached(k pageKey, top uint64) (*page, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[k]
	if !ok {
		return nil, false
	}
	// A page that was not full is good until something newer is due.
	if !e.full && top > e.top {
		delete(p.entries, k)
		p.bytes -= e.size
		return nil, false
	}
	return e, true
}

func (p *pages) generation(conv string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen[conv]
}

// keep caches e unless conv was forgotten since generation gen.
func (p *pages) keep(k pageKey, e *page, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen[k.conv] != gen {
		return
	}
	if old, ok := p.entries[k]; ok {
		p.bytes -= old.size
	}
	for old, oe := range p.entries { // evict arbitrary ones
		if p.bytes+e.size <= cacheBytes {
			break
		}
		delete(p.entries, old)
		p.bytes -= oe.size
	}
	p.entries[k] = e
	p.bytes += e.size
}

// get returns the page of k holding seqs up to top (0: all there are),
// from the cache or built once.
func (p *pages) get(ctx context.Context, k pageKey, top uint64) (*page, error) {
	if e, ok := p.cached(k, top); ok {
		p.s.metrics.pulls.WithLabelValues("cached").Inc()
		return e, nil
	}
	v, err, _ := p.group.Do(fmt.Sprintf("%s|%d|%d|%d|%d", k.conv, k.after, k.limit, k.codec, top), func() (any, error) {
		if e, ok := p.cached(k, top); ok {
			return e, nil
		}
		p.s.metrics.pulls.WithLabelValues("built").Inc()
		gen := p.generation(k.conv)
		e, err := p.build(ctx, k, top)
		if err != nil {
			return nil, err
		}
		if e.whole {
			p.keep(k, e, gen)
		}
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*page), nil
}

func (p *pages) build(ctx context.Context, k pageKey, upTo uint64) (*page, error) {
	msgs, err := p.s.store.History(ctx, k.conv, 0, k.after, k.limit+1)
	if err != nil {
		return nil, err
	}
	if upTo > 0 {
		for i, m := range msgs {
			if m.Seq > upTo {
				msgs = msgs[:i]
				break
			}
		}
	}
	more := len(msgs) > k.limit
	if more {
		msgs = msgs[:k.limit]
	}
	// Bound the page in bytes too; the client pulls the rest.
	size := 0
	for i, m := range msgs {
		size += len(m.Body) + len(m.SenderName) + 128
		if size > pageBytes && i > 0 {
			msgs, more = msgs[:i], true
			break
		}
	}
	out := make([]chat.Message, len(msgs))
	var top uint64
	whole := true
	for i, m := range msgs {
		out[i] = toWire(m)
		top = max(top, m.Seq)
		whole = whole && m.Seq == k.after+1+uint64(i)
	}
	b, err := chat.Encode(chat.Frame{Type: chat.TypePage, Ref: chat.TypePull, Conv: k.conv, After: k.after, Messages: out, HasMore: more})
	if err != nil {
		return nil, err
	}
	kind := websocket.TextMessage
	if k.codec != 0 && len(b) >= chat.CompressMin {
		raw := len(b)
		if b, err = p.s.compressor.Compress(k.codec, b); err != nil {
			return nil, err
		}
		kind = websocket.BinaryMessage
		p.s.metrics.compressIn.Add(float64(raw))
		p.s.metrics.compressOut.Add(float64(len(b)))
	}
	pm, err := websocket.NewPreparedMessage(kind, b)
	if err != nil {
		return nil, err
	}
	return &page{frame: outFrame{prepared: pm, pull: true}, top: top, full: more, whole: whole, size: len(b)}, nil
}

func (s *Server) handlePull(ctx context.Context, c *conn, f chat.Frame) {
	if !s.access(c, f.Conv) {
		c.sendError(f.Ref, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	}
	var codec byte
	if f.Codec != "" {
		var ok bool
		if codec, ok = chat.CodecByName(f.Codec); !ok {
			c.sendError(f.Ref, chat.ErrInvalid, fmt.Sprintf("codec %q: want %q, %q or none", f.Codec, chat.CodecNameZstd, chat.CodecNameDeflate))
			return
		}
	}
	limit := f.Limit
	if limit <= 0 || limit > s.opts.PullMax {
		limit = s.opts.PullMax
	}
	if !c.reservePull(pullsInFlight) {
		c.sendError(f.Ref, chat.ErrRateLimited, fmt.Sprintf("at most %d pulls in flight", pullsInFlight))
		return
	}
	k := pageKey{conv: f.Conv, after: f.After, limit: limit, codec: codec}
	// Up to what this node published; in a storm, up to what the
	// subscribers were told, which is the same for all of them: clients
	// that keep up all stand at the last notify's seq and share one page,
	// read, encoded and compressed once.
	top, storming := s.storms.pullCap(f.Conv)
	if !storming {
		top = s.pages.head(f.Conv)
	}
	e, err := s.pages.get(ctx, k, top)
	if err != nil {
		c.releasePull()
		c.sendError(f.Ref, chat.ErrUnavailable, "pull unavailable; retry")
		return
	}
	c.sendPage(e.frame)
}

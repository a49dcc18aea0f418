package chatserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
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
	store      historyReader
	tombstone  func(ms []StoredMessage, cause error) // writes tombstones at ms's seqs
	compressor *chat.Compressor
	log        *slog.Logger
	// pulls counts answers by source; compressIn and compressOut the
	// bytes before and after compression.
	pulls                   *prometheus.CounterVec
	compressIn, compressOut prometheus.Counter
	group                   singleflight.Group

	mu      sync.Mutex
	entries map[pageKey]*page
	bytes   int               // of the entries
	heads   map[string]uint64 // newest seq published per conversation
	// gen counts forgets per conversation: a page whose build began
	// before a forget (a deletion) may hold the old body and is not kept.
	gen map[string]uint64
}

// historyReader is what pages read of the store.
type historyReader interface {
	HistoryAfter(ctx context.Context, conv string, after uint64, limit int) ([]StoredMessage, error)
}

func newPages(store historyReader, tombstone func([]StoredMessage, error), log *slog.Logger, m metrics) *pages {
	return &pages{
		store: store, tombstone: tombstone, compressor: chat.NewCompressor(), log: log,
		pulls: m.pulls, compressIn: m.compressIn, compressOut: m.compressOut,
		entries: map[pageKey]*page{}, heads: map[string]uint64{}, gen: map[string]uint64{},
	}
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
		p.pulls.WithLabelValues("cached").Inc()
		return e, nil
	}
	v, err, _ := p.group.Do(fmt.Sprintf("%s|%d|%d|%d|%d", k.conv, k.after, k.limit, k.codec, top), func() (any, error) {
		if e, ok := p.cached(k, top); ok {
			return e, nil
		}
		p.pulls.WithLabelValues("built").Inc()
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
	msgs, err := p.store.HistoryAfter(ctx, k.conv, k.after, k.limit+1)
	if err != nil {
		return nil, err
	}
	if p.tombstoneHoles(k, msgs) { // read again with the holes' tombstones
		if msgs, err = p.store.HistoryAfter(ctx, k.conv, k.after, k.limit+1); err != nil {
			return nil, err
		}
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
		if b, err = p.compressor.Compress(k.codec, b); err != nil {
			return nil, err
		}
		kind = websocket.BinaryMessage
		p.compressIn.Add(float64(raw))
		p.compressOut.Add(float64(len(b)))
	}
	pm, err := websocket.NewPreparedMessage(kind, b)
	if err != nil {
		return nil, err
	}
	return &page{frame: outFrame{prepared: pm, pull: true}, top: top, full: more, whole: whole, size: len(b)}, nil
}

// holeGrace is how long a seq may be missing below a stored one before a
// pull tombstones it. A hole that old was left by a node that allocated
// the seq and died before writing it (docs/scale-out.md §3.2); clients
// would wait for it forever. A writer that is merely slow loses nothing:
// its write then meets the tombstone under the primary key and is written
// again under a fresh seq, like any seq conflict.
const holeGrace = 3 * time.Second

// holesPerPull bounds the tombstones one pull writes (in one
// transaction): a wider hole takes a few pulls.
const holesPerPull = 1024

// tombstoneHoles writes a tombstone for every seq missing from msgs (the
// seqs after k.after) below a message stored more than holeGrace ago, and
// reports whether it wrote any.
func (p *pages) tombstoneHoles(k pageKey, msgs []StoredMessage) bool {
	next := k.after + 1
	var holes []StoredMessage
	for _, m := range msgs {
		if m.Seq > next && time.Since(m.CreatedAt) > holeGrace {
			for seq := next; seq < m.Seq && len(holes) < holesPerPull; seq++ {
				holes = append(holes, StoredMessage{Conv: k.conv, Seq: seq, CreatedAt: m.CreatedAt})
			}
		}
		next = m.Seq + 1
	}
	if len(holes) == 0 {
		return false
	}
	p.tombstone(holes, errors.New("a hole below a stored seq"))
	p.log.Warn("chat: tombstoned seqs missing below stored ones (a node died between allocating and writing them)",
		"conv", k.conv, "after", k.after, "seqs", len(holes), "first", holes[0].Seq, "last", holes[len(holes)-1].Seq)
	return true
}

func (s *Server) handlePull(ctx context.Context, c *conn, f chat.Frame) {
	if !s.access(c, f.Conv) {
		c.fail(f, chat.ErrForbidden, "not a member of "+f.Conv)
		return
	}
	if f.After > chat.MaxSeq {
		c.fail(f, chat.ErrInvalid, "after: at most 2^63-1")
		return
	}
	var codec byte
	if f.Codec != "" {
		var ok bool
		if codec, ok = chat.CodecByName(f.Codec); !ok {
			c.fail(f, chat.ErrInvalid, fmt.Sprintf("codec %q: want %q, %q or none", f.Codec, chat.CodecNameZstd, chat.CodecNameDeflate))
			return
		}
	}
	limit := f.Limit
	if limit <= 0 || limit > s.opts.PullMax {
		limit = s.opts.PullMax
	}
	if !c.reservePull(pullsInFlight) {
		c.fail(f, chat.ErrRateLimited, fmt.Sprintf("at most %d pulls in flight", pullsInFlight))
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
		c.fail(f, chat.ErrUnavailable, "pull unavailable; retry")
		return
	}
	c.sendPage(e.frame)
}

package relay

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go4.org/mem"
	"tailscale.com/derp"
	"tailscale.com/types/key"
)

// Flows: which node pairs this relay carries packets between. The relay
// reads (never changes) the byte stream each client sends: DERP frames
// are a type byte, a 4-byte length and a body; a client-info frame names
// the sender's key, a send-packet frame the receiver's, a mesh peer's
// forward-packet frame both. Only those keys are read; packet bodies
// pass through untouched. derpserver itself keeps no per-pair record.

// Flow is what the relay saw one node send another.
type Flow struct {
	Src, Dst key.NodePublic
	Packets  uint64
	Bytes    uint64
	Last     time.Time
}

// flowTTL is how long a pair that stopped sending is remembered.
const flowTTL = 2 * time.Minute

// maxFlows bounds the table; past it stale pairs are dropped first, and
// when none are stale new pairs are not recorded until some age out.
const maxFlows = 1 << 16

type pair struct{ src, dst key.NodePublic }

type flowTable struct {
	mu    sync.Mutex
	flows map[pair]*Flow
	now   func() time.Time
}

func (t *flowTable) note(src, dst key.NodePublic, n int) { t.add(src, dst, 1, uint64(n), t.now()) }

// add records packets bytes sent from src to dst, the last at now.
func (t *flowTable) add(src, dst key.NodePublic, packets, bytes uint64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flows == nil {
		t.flows = map[pair]*Flow{}
	}
	p := pair{src, dst}
	f := t.flows[p]
	if f == nil {
		if len(t.flows) >= maxFlows {
			t.pruneLocked(now)
			if len(t.flows) >= maxFlows {
				return
			}
		}
		f = &Flow{Src: src, Dst: dst}
		t.flows[p] = f
	}
	f.Packets += packets
	f.Bytes += bytes
	f.Last = now
}

func (t *flowTable) pruneLocked(now time.Time) {
	for p, f := range t.flows {
		if now.Sub(f.Last) > flowTTL {
			delete(t.flows, p)
		}
	}
}

// since returns the pairs that sent a packet at or after from.
func (t *flowTable) since(from time.Time) []Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(t.now())
	var out []Flow
	for _, f := range t.flows {
		if !f.Last.Before(from) {
			out = append(out, *f)
		}
	}
	return out
}

// Flows returns the node pairs this relay carried a packet between at or
// after since (at most the last two minutes are kept).
func (s *Server) Flows(since time.Time) []Flow { return s.flows.since(since) }

// RelayedBetween reports whether this relay carried a packet between the
// two nodes (Headscale's "nodekey:…" form), either way, at or after since.
func (s *Server) RelayedBetween(a, b string, since time.Time) bool {
	var ka, kb key.NodePublic
	if ka.UnmarshalText([]byte(a)) != nil || kb.UnmarshalText([]byte(b)) != nil {
		return false
	}
	s.flows.mu.Lock()
	defer s.flows.mu.Unlock()
	for _, p := range []pair{{ka, kb}, {kb, ka}} {
		if f := s.flows.flows[p]; f != nil && !f.Last.Before(since) {
			return true
		}
	}
	return false
}

// NodeConnected reports whether the node (Headscale's "nodekey:…" form)
// holds a connection to this relay now.
func (s *Server) NodeConnected(nodeKey string) bool {
	var k key.NodePublic
	if k.UnmarshalText([]byte(nodeKey)) != nil {
		return false
	}
	return s.derp.IsClientConnectedForTest(k)
}

// tapHandler serves h, reading the frames each hijacked connection sends.
func (s *Server) tapHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hj, ok := w.(http.Hijacker); ok {
			w = &tapWriter{ResponseWriter: w, hj: hj, table: &s.flows}
		}
		h.ServeHTTP(w, r)
	})
}

type tapWriter struct {
	http.ResponseWriter
	hj    http.Hijacker
	table *flowTable
}

func (w *tapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := w.hj.Hijack()
	if err != nil {
		return c, brw, err
	}
	tr := &tapReader{r: brw.Reader, table: w.table}
	return c, bufio.NewReadWriter(bufio.NewReader(tr), brw.Writer), nil
}

// tapReader passes a client's bytes through and parses their framing.
type tapReader struct {
	r     io.Reader
	table *flowTable

	hdr     [derp.FrameHeaderLen]byte
	hdrN    int
	typ     derp.FrameType
	left    uint32 // body bytes of the current frame not yet passed
	size    uint32 // the current frame's body length
	keys    [2 * derp.KeyLen]byte
	keysN   int
	keysFor int // how many key bytes the current frame starts with
	self    key.NodePublic
	haveKey bool

	// What this connection sent to its current peer since it last told
	// the table: the table's lock is taken when the peer changes or a
	// second has passed, not for every packet.
	pend      key.NodePublic
	pendN     uint64
	pendBytes uint64
	pendSince time.Time
}

// notePending counts a packet to dst: a new peer goes into the table at
// once, then the counts for it are added once a second (or when the
// connection sends to another peer, or ends).
func (t *tapReader) notePending(dst key.NodePublic, n int) {
	now := t.table.now()
	if dst != t.pend {
		t.flush(now)
		t.pend, t.pendN, t.pendBytes = dst, 1, uint64(n)
		t.flush(now)
		t.pendSince = now
		return
	}
	t.pendN++
	t.pendBytes += uint64(n)
	if now.Sub(t.pendSince) >= time.Second {
		t.flush(now)
		t.pendSince = now
	}
}

func (t *tapReader) flush(now time.Time) {
	if t.pendN == 0 {
		return
	}
	t.table.add(t.self, t.pend, t.pendN, t.pendBytes, now)
	t.pendN, t.pendBytes = 0, 0
}

func (t *tapReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.scan(p[:n])
	if err != nil {
		t.flush(t.table.now())
	}
	return n, err
}

func (t *tapReader) scan(b []byte) {
	for len(b) > 0 {
		if t.hdrN < len(t.hdr) {
			c := copy(t.hdr[t.hdrN:], b)
			t.hdrN += c
			b = b[c:]
			if t.hdrN < len(t.hdr) {
				return
			}
			t.typ = derp.FrameType(t.hdr[0])
			t.size = binary.BigEndian.Uint32(t.hdr[1:])
			t.left = t.size
			t.keysN = 0
			switch t.typ {
			case derp.FrameClientInfo, derp.FrameSendPacket:
				t.keysFor = derp.KeyLen
			case derp.FrameForwardPacket:
				t.keysFor = 2 * derp.KeyLen
			default:
				t.keysFor = 0
			}
			if uint32(t.keysFor) > t.size {
				t.keysFor = 0
			}
			if t.left == 0 {
				t.hdrN = 0
			}
			continue
		}
		if t.keysN < t.keysFor {
			c := copy(t.keys[t.keysN:t.keysFor], b)
			t.keysN += c
			t.left -= uint32(c)
			b = b[c:]
			if t.keysN == t.keysFor {
				t.frameKeys()
			}
		} else {
			c := uint32(len(b))
			if c > t.left {
				c = t.left
			}
			t.left -= c
			b = b[c:]
		}
		if t.left == 0 {
			t.hdrN = 0
		}
	}
}

func (t *tapReader) frameKeys() {
	body := int(t.size) - t.keysFor
	switch t.typ {
	case derp.FrameClientInfo:
		t.self = key.NodePublicFromRaw32(mem.B(t.keys[:derp.KeyLen]))
		t.haveKey = true
	case derp.FrameSendPacket:
		if t.haveKey {
			t.notePending(key.NodePublicFromRaw32(mem.B(t.keys[:derp.KeyLen])), body)
		}
	case derp.FrameForwardPacket:
		t.table.note(key.NodePublicFromRaw32(mem.B(t.keys[:derp.KeyLen])),
			key.NodePublicFromRaw32(mem.B(t.keys[derp.KeyLen:2*derp.KeyLen])), body)
	}
}

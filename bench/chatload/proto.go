package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomnet/roomnet/bench/internal/measure"
	"github.com/roomnet/roomnet/chat"
)

// sink receives what subscribers see.
type sink struct {
	lat       measure.Hist // publish to receive, chat messages
	crit      measure.Hist // critical messages
	ack       measure.Hist // send to the server's ack (roomnet: sent; centrifugo: the publish reply)
	ackN      atomic.Int64
	delivered atomic.Int64
	critN     atomic.Int64
	bytes     atomic.Int64 // read off the wire by subscribers
	from, to  atomic.Int64 // the measured window: messages sent in it count
}

func (s *sink) got(sent int64, critical bool) { s.gotAt(time.Now().UnixNano(), sent, critical) }

// acked records a publisher's send, made at sent (unix ns), acknowledged
// now, if it was made in the measured window.
func (s *sink) acked(sent int64) {
	if f, t := s.from.Load(), s.to.Load(); f == 0 || sent < f || t != 0 && sent >= t {
		return
	}
	s.ack.Add(time.Duration(time.Now().UnixNano() - sent))
	s.ackN.Add(1)
}

// gotAt is got with the clock read once for a whole page.
func (s *sink) gotAt(now, sent int64, critical bool) {
	if f, t := s.from.Load(), s.to.Load(); f == 0 || sent < f || t != 0 && sent >= t {
		return
	}
	d := time.Duration(now - sent)
	if critical {
		s.crit.Add(d)
		s.critN.Add(1)
		return
	}
	s.lat.Add(d)
	s.delivered.Add(1)
}

// target is one server under load.
type target interface {
	subscribe(ctx context.Context, id int, s *sink) (func(), error)
	// publisher's acks go to s.acked.
	publisher(ctx context.Context, id int, s *sink) (func(body string) error, func(), error)
	critical(ctx context.Context, body string) error
}

func dialer(s *sink) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil || s == nil {
				return c, err
			}
			return counting{c, &s.bytes}, nil
		},
	}
}

// stamp finds the send time written as "t=<unix ns>" at the start of a body.
func stamp(body string) (int64, bool) {
	rest, ok := strings.CutPrefix(body, "t=")
	if !ok {
		return 0, false
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil
}

// roomnet speaks roomnet's chat protocol, pulling in storm mode as the SDK does.
type roomnet struct {
	url, http string // ws://.../ws and http://... of the bench server
	lobby     string
	pages     pageCache
}

// pageCache decodes a pulled page once for all the simulated clients
// that receive the same bytes (the server sends one prepared page to
// all): one core simulates a thousand clients, and decompressing and
// scanning the same page a thousand times would make the load tool, not
// the server, the bottleneck of the latencies it measures. Each client
// still reads its page from its own socket and records the time it got it.
type pageCache struct {
	mu      sync.Mutex
	entries map[string]*scanned
}

type scanned struct {
	msgs []pageEntry
	more bool
}

type pageEntry struct {
	seq      uint64
	stamp    int64
	critical bool
}

func (c *pageCache) get(compressed []byte, unzip *chat.Decompressor) (*scanned, bool) {
	c.mu.Lock()
	if e, ok := c.entries[string(compressed)]; ok {
		c.mu.Unlock()
		return e, true
	}
	c.mu.Unlock()
	b, err := unzip.Decompress(compressed)
	if err != nil {
		return nil, false
	}
	e := &scanned{}
	more, ok := scanPage(b, func(seq uint64, stamp int64, critical bool) {
		e.msgs = append(e.msgs, pageEntry{seq, stamp, critical})
	})
	if !ok {
		return nil, false
	}
	e.more = more
	c.mu.Lock()
	if c.entries == nil || len(c.entries) > 256 {
		c.entries = map[string]*scanned{}
	}
	c.entries[string(compressed)] = e
	c.mu.Unlock()
	return e, true
}

func (r *roomnet) dial(ctx context.Context, id int, s *sink) (*websocket.Conn, error) {
	h := http.Header{"Authorization": {"Bearer u" + strconv.Itoa(id)}}
	ws, _, err := dialer(s).DialContext(ctx, r.url, h)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(chat.MaxBatchBytes)
	return ws, nil
}

func writeFrame(ws *websocket.Conn, mu *sync.Mutex, f chat.Frame) error {
	b, err := chat.Encode(f)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return ws.WriteMessage(websocket.TextMessage, b)
}

func (r *roomnet) subscribe(ctx context.Context, id int, s *sink) (func(), error) {
	ws, err := r.dial(ctx, id, s)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	if err := writeFrame(ws, &mu, chat.Frame{Type: chat.TypeJoin, Conv: r.lobby, Ref: "j"}); err != nil {
		ws.Close()
		return nil, err
	}
	unzip := chat.NewDecompressor()
	var pos, newest uint64
	ahead := map[uint64]bool{}
	started, pulling := false, false
	pull := func() {
		if !pulling {
			pulling = true
			_ = writeFrame(ws, &mu, chat.Frame{Type: chat.TypePull, Conv: r.lobby, After: pos, Limit: 1000, Codec: chat.CodecNameZstd})
		}
	}
	var now int64
	seen := func(seq uint64, sent int64, critical bool) {
		if seq <= pos || ahead[seq] {
			return
		}
		if sent != 0 {
			s.gotAt(now, sent, critical)
		}
		if seq != pos+1 {
			ahead[seq] = true
			return
		}
		for pos++; ahead[pos+1]; pos++ {
			delete(ahead, pos+1)
		}
	}
	take := func(m chat.Message) {
		now = time.Now().UnixNano()
		sent, _ := stamp(m.Body)
		seen(m.Seq, sent, m.Critical)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			kind, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if kind == websocket.BinaryMessage {
				now = time.Now().UnixNano()
				pg, ok := r.pages.get(b, unzip)
				if ok {
					pulling = false
					before := pos
					for _, e := range pg.msgs {
						seen(e.seq, e.stamp, e.critical)
					}
					if pos > before && (pg.more || newest > pos) {
						pull()
					}
				}
				continue
			} else if m, ok := scanMsg(b); ok && started {
				// The common frame, scanned rather than decoded so the
				// load tool stays cheaper than the server it loads.
				newest = max(newest, m.Seq)
				take(m)
				if len(ahead) > 0 {
					pull()
				}
				continue
			}
			f, err := chat.DecodeServer(b)
			if err != nil {
				continue
			}
			switch f.Type {
			case chat.TypeJoined:
				pos, newest, started = f.Seq, f.Seq, true
			case chat.TypeMsg:
				if started && f.Msg != nil {
					newest = max(newest, f.Msg.Seq)
					take(*f.Msg)
					if len(ahead) > 0 {
						pull()
					}
				}
			case chat.TypeNotify:
				newest = max(newest, f.Seq)
				if started && newest > pos {
					pull()
				}
			case chat.TypePage:
				pulling = false
				before := pos
				for _, m := range f.Messages {
					take(m)
				}
				if pos > before && (f.HasMore || newest > pos) {
					pull()
				}
			}
		}
	}()
	pinger := time.NewTicker(10 * time.Second)
	go func() {
		for {
			select {
			case <-done:
				pinger.Stop()
				return
			case <-pinger.C:
				_ = writeFrame(ws, &mu, chat.Frame{Type: chat.TypePing, TS: time.Now().UnixMilli(), Interval: 10000})
			}
		}
	}()
	return func() { ws.Close(); <-done }, nil
}

func (r *roomnet) publisher(ctx context.Context, id int, s *sink) (func(string) error, func(), error) {
	ws, err := r.dial(ctx, id, nil)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	go func() { // acks: the send time is the client message id's last field
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if !bytes.Contains(b, []byte(`"type":"sent"`)) {
				continue
			}
			if f, err := chat.DecodeServer(b); err == nil && f.Type == chat.TypeSent {
				if i := strings.LastIndexByte(f.Ref, '-'); i >= 0 {
					if sent, err := strconv.ParseInt(f.Ref[i+1:], 10, 64); err == nil {
						s.acked(sent)
					}
				}
			}
		}
	}()
	_ = writeFrame(ws, &mu, chat.Frame{Type: chat.TypeJoin, Conv: r.lobby, Ref: "j"})
	n := 0
	send := func(body string) error {
		n++
		id := fmt.Sprintf("p%d-%d-%d", id, n, time.Now().UnixNano())
		return writeFrame(ws, &mu, chat.Frame{Type: chat.TypeSend, Conv: r.lobby, ClientMsgID: id, Body: body})
	}
	return send, func() { ws.Close() }, nil
}

func (r *roomnet) critical(ctx context.Context, body string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.http+"/announce",
		strings.NewReader(url.Values{"conv": {r.lobby}, "text": {body}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("announce: %s", resp.Status)
	}
	return nil
}

// centrifugo speaks Centrifugo's JSON protocol (v2, newline-batched).
type centrifugo struct {
	url, api string // ws://.../connection/websocket and http://.../api
	secret   string // HMAC key of connection tokens
	apiKey   string
	channel  string
}

func (c *centrifugo) token(id int) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := enc.EncodeToString(fmt.Appendf(nil, `{"sub":"u%d","exp":%d}`, id, time.Now().Add(24*time.Hour).Unix()))
	mac := hmac.New(sha256.New, []byte(c.secret))
	mac.Write([]byte(head + "." + claims))
	return head + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
}

var msgPrefix = []byte(`{"v":1,"type":"msg","msg":{`)

// scanMsg reads seq, body and critical of a msg frame without decoding
// it; anything unusual goes to the full decoder.
func scanMsg(b []byte) (chat.Message, bool) {
	if !bytes.HasPrefix(b, msgPrefix) {
		return chat.Message{}, false
	}
	seq, ok := scanInt(b, []byte(`"seq":`))
	if !ok {
		return chat.Message{}, false
	}
	i := bytes.Index(b, []byte(`"body":"`))
	if i < 0 {
		return chat.Message{}, false
	}
	body := b[i+8:]
	if j := bytes.IndexByte(body, ' '); j >= 0 && j < 40 {
		body = body[:j]
	}
	return chat.Message{Seq: uint64(seq), Body: string(body), Critical: bytes.Contains(b, []byte(`"critical":true`))}, true
}

var pagePrefix = []byte(`{"v":1,"type":"page","ref":"pull",`)

var (
	messagesKey = []byte(`"messages":[`)
	seqKey      = []byte(`"seq":`)
	bodyKey     = []byte(`"body":"`)
	tsKey       = []byte(`"ts":`)
	critTail    = []byte(`,"critical":true`)
	moreTail    = []byte(`"has_more":true}`)
)

// scanPage calls f with the seq, stamp (0: none) and critical flag of
// each message of a pulled page, in one pass over it and without
// allocating (the load tool must stay cheaper than the server it loads);
// it reports has_more and whether b was a pulled page at all. It relies
// on the order of chat.Message's fields on the wire.
func scanPage(b []byte, f func(seq uint64, stamp int64, critical bool)) (more, ok bool) {
	if !bytes.HasPrefix(b, pagePrefix) {
		return false, false
	}
	more = bytes.HasSuffix(b, moreTail)
	i := bytes.Index(b, messagesKey)
	if i < 0 {
		return more, true
	}
	rest := b[i+len(messagesKey):]
	for {
		j := bytes.Index(rest, seqKey)
		if j < 0 {
			return more, true
		}
		rest = rest[j+len(seqKey):]
		seq, n := digits(rest)
		rest = rest[n:]
		var stamp int64
		if k := bytes.Index(rest, bodyKey); k >= 0 {
			rest = rest[k+len(bodyKey):]
			if len(rest) > 2 && rest[0] == 't' && rest[1] == '=' {
				stamp, n = digits(rest[2:])
				rest = rest[2+n:]
			}
		}
		t := bytes.Index(rest, tsKey)
		if t < 0 {
			return more, false
		}
		rest = rest[t+len(tsKey):]
		_, n = digits(rest)
		rest = rest[n:]
		f(uint64(seq), stamp, bytes.HasPrefix(rest, critTail))
	}
}

// digits parses the decimal number at the start of b and its length.
func digits(b []byte) (int64, int) {
	var n int64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	return n, i
}

func scanInt(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return n, err == nil
}

type cfReply struct {
	ID    int `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Pub *struct {
			Data struct {
				T int64 `json:"t"`
				C bool  `json:"c"`
			} `json:"data"`
		} `json:"pub"`
	} `json:"push"`
}

func (c *centrifugo) connect(ctx context.Context, id int, s *sink, subscribe bool, onPub func(t int64, crit bool), onReply func(id int)) (*websocket.Conn, chan struct{}, *sync.Mutex, error) {
	ws, _, err := dialer(s).DialContext(ctx, c.url, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	var mu sync.Mutex
	write := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return ws.WriteMessage(websocket.TextMessage, b)
	}
	cmds := fmt.Sprintf(`{"id":1,"connect":{"token":%q,"name":"chatload"}}`, c.token(id))
	if subscribe {
		cmds += fmt.Sprintf("\n"+`{"id":2,"subscribe":{"channel":%q}}`, c.channel)
	}
	if err := write([]byte(cmds)); err != nil {
		ws.Close()
		return nil, nil, nil, err
	}
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		want := 1
		if subscribe {
			want = 2
		}
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				select {
				case ready <- err:
				default:
				}
				return
			}
			for line := range bytes.SplitSeq(b, []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				if bytes.Equal(line, []byte("{}")) { // ping
					_ = write([]byte("{}"))
					continue
				}
				if onPub != nil && bytes.HasPrefix(line, []byte(`{"push":{"channel"`)) {
					// A publication, scanned rather than decoded.
					if t, ok := scanInt(line, []byte(`"t":`)); ok {
						onPub(t, bytes.Contains(line, []byte(`"c":true`)))
						continue
					}
				}
				var r cfReply
				if json.Unmarshal(line, &r) != nil {
					continue
				}
				if r.Error != nil {
					select {
					case ready <- fmt.Errorf("centrifugo: %d %s", r.Error.Code, r.Error.Message):
					default:
					}
					continue
				}
				if r.ID == want {
					ready <- nil
				} else if r.ID > want && onReply != nil {
					onReply(r.ID)
				}
				if r.Push != nil && r.Push.Pub != nil && onPub != nil {
					onPub(r.Push.Pub.Data.T, r.Push.Pub.Data.C)
				}
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			ws.Close()
			<-done
			return nil, nil, nil, err
		}
	case <-ctx.Done():
		ws.Close()
		<-done
		return nil, nil, nil, ctx.Err()
	}
	return ws, done, &mu, nil
}

func (c *centrifugo) subscribe(ctx context.Context, id int, s *sink) (func(), error) {
	ws, done, _, err := c.connect(ctx, id, s, true, func(t int64, crit bool) { s.got(t, crit) }, nil)
	if err != nil {
		return nil, err
	}
	return func() { ws.Close(); <-done }, nil
}

func (c *centrifugo) publisher(ctx context.Context, id int, s *sink) (func(string) error, func(), error) {
	var pending sync.Map // command id -> send time (unix ns)
	ws, done, mu, err := c.connect(ctx, id, nil, true, nil, func(id int) {
		if t, ok := pending.LoadAndDelete(id); ok {
			s.acked(t.(int64))
		}
	})
	if err != nil {
		return nil, nil, err
	}
	n := 2
	send := func(body string) error {
		n++
		t, _ := stamp(body)
		pending.Store(n, time.Now().UnixNano())
		b := fmt.Appendf(nil, `{"id":%d,"publish":{"channel":%q,"data":{"t":%d,"b":%q}}}`, n, c.channel, t, body)
		mu.Lock()
		defer mu.Unlock()
		return ws.WriteMessage(websocket.TextMessage, b)
	}
	return send, func() { ws.Close(); <-done }, nil
}

func (c *centrifugo) critical(ctx context.Context, body string) error {
	t, _ := stamp(body)
	payload := fmt.Sprintf(`{"channel":%q,"data":{"t":%d,"c":true,"b":%q}}`, c.channel, t, body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.api+"/publish", strings.NewReader(payload))
	req.Header.Set("X-API-Key", c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish API: %s", resp.Status)
	}
	return nil
}

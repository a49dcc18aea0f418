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

	"github.com/roomnet/roomnet/chat"
)

// sink receives what subscribers see.
type sink struct {
	lat       hist // publish to receive, chat messages
	crit      hist // critical messages
	delivered atomic.Int64
	critN     atomic.Int64
	bytes     atomic.Int64 // read off the wire by subscribers
	from, to  atomic.Int64 // the measured window: messages sent in it count
}

func (s *sink) got(sent int64, critical bool) {
	if f, t := s.from.Load(), s.to.Load(); f == 0 || sent < f || t != 0 && sent >= t {
		return
	}
	d := time.Duration(time.Now().UnixNano() - sent)
	if critical {
		s.crit.add(d)
		s.critN.Add(1)
		return
	}
	s.lat.add(d)
	s.delivered.Add(1)
}

// target is one server under load.
type target interface {
	subscribe(ctx context.Context, id int, s *sink) (func(), error)
	publisher(ctx context.Context, id int) (func(body string) error, func(), error)
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
			_ = writeFrame(ws, &mu, chat.Frame{Type: chat.TypePull, Conv: r.lobby, After: pos, Limit: 200, Codec: chat.CodecNameZstd})
		}
	}
	take := func(m chat.Message) {
		if m.Seq <= pos || ahead[m.Seq] {
			return
		}
		if t, ok := stamp(m.Body); ok {
			s.got(t, m.Critical)
		}
		if m.Seq != pos+1 {
			ahead[m.Seq] = true
			return
		}
		for pos++; ahead[pos+1]; pos++ {
			delete(ahead, pos+1)
		}
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
				if b, err = unzip.Decompress(b); err != nil {
					continue
				}
				if msgs, more, ok := scanPage(b); ok {
					pulling = false
					for _, m := range msgs {
						take(m)
					}
					if more || newest > pos && len(msgs) > 0 {
						pull()
					}
					continue
				}
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
				for _, m := range f.Messages {
					take(m)
				}
				if f.HasMore || newest > pos && len(f.Messages) > 0 {
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

func (r *roomnet) publisher(ctx context.Context, id int) (func(string) error, func(), error) {
	ws, err := r.dial(ctx, id, nil)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	go func() { // acks; discarded
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	_ = writeFrame(ws, &mu, chat.Frame{Type: chat.TypeJoin, Conv: r.lobby, Ref: "j"})
	n := 0
	send := func(body string) error {
		n++
		return writeFrame(ws, &mu, chat.Frame{Type: chat.TypeSend, Conv: r.lobby, ClientMsgID: fmt.Sprintf("p%d-%d", id, n), Body: body})
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

// scanPage reads the seqs, stamps and critical flags of a pulled page.
func scanPage(b []byte) ([]chat.Message, bool, bool) {
	if !bytes.HasPrefix(b, pagePrefix) {
		return nil, false, false
	}
	more := bytes.HasSuffix(b, []byte(`"has_more":true}`))
	var out []chat.Message
	i := bytes.Index(b, []byte(`"messages":[`))
	if i < 0 {
		return nil, more, true
	}
	rest := b[i:]
	for {
		j := bytes.Index(rest, []byte(`{"conv":`))
		if j < 0 {
			return out, more, true
		}
		rest = rest[j+1:]
		end := bytes.Index(rest, []byte(`{"conv":`))
		one := rest
		if end >= 0 {
			one = rest[:end]
		}
		seq, ok := scanInt(one, []byte(`"seq":`))
		if !ok {
			return nil, false, false
		}
		m := chat.Message{Seq: uint64(seq), Critical: bytes.Contains(one, []byte(`"critical":true`))}
		if k := bytes.Index(one, []byte(`"body":"`)); k >= 0 {
			body := one[k+8:]
			if e := bytes.IndexByte(body, ' '); e >= 0 && e < 40 {
				body = body[:e]
			}
			m.Body = string(body)
		}
		out = append(out, m)
	}
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

func (c *centrifugo) connect(ctx context.Context, id int, s *sink, subscribe bool, onPub func(t int64, crit bool)) (*websocket.Conn, chan struct{}, *sync.Mutex, error) {
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
	ws, done, _, err := c.connect(ctx, id, s, true, func(t int64, crit bool) { s.got(t, crit) })
	if err != nil {
		return nil, err
	}
	return func() { ws.Close(); <-done }, nil
}

func (c *centrifugo) publisher(ctx context.Context, id int) (func(string) error, func(), error) {
	ws, done, mu, err := c.connect(ctx, id, nil, true, nil)
	if err != nil {
		return nil, nil, err
	}
	n := 2
	send := func(body string) error {
		n++
		t, _ := stamp(body)
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

// Package faultproxy is a WebSocket proxy for tests that drops,
// duplicates, delays and reorders frames in both directions and cuts
// connections, so that chat's guarantees can be checked under faults.
package faultproxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Faults are probabilities per frame (0..1) and bounds.
type Faults struct {
	Drop, Duplicate, Reorder float64
	MaxDelay                 time.Duration
	// CutEvery cuts each connection after a random time in
	// [CutEvery/2, 3·CutEvery/2]; 0 never cuts.
	CutEvery time.Duration
}

// Proxy forwards WebSocket connections to Target with faults.
type Proxy struct {
	Target string // ws://host/ws
	srv    *http.Server
	ln     net.Listener

	mu              sync.Mutex
	up, down        Faults
	conns           map[*websocket.Conn]struct{}
	Dropped, Duped  atomic.Int64
	Reordered, Cuts atomic.Int64
	upgrader        websocket.Upgrader
	wg              sync.WaitGroup
}

// New listens on a loopback port.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Target: target, ln: ln, conns: map[*websocket.Conn]struct{}{}, upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}}
	p.srv = &http.Server{Handler: p}
	go p.srv.Serve(ln)
	return p, nil
}

// URL is the proxy's ws:// URL.
func (p *Proxy) URL() string { return "ws://" + p.ln.Addr().String() + "/ws" }

// Set changes the faults: up is client to server, down server to client.
func (p *Proxy) Set(up, down Faults) {
	p.mu.Lock()
	p.up, p.down = up, down
	p.mu.Unlock()
}

func (p *Proxy) faults(upstream bool) Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	if upstream {
		return p.up
	}
	return p.down
}

// ServeHTTP accepts a client and dials the target with its auth header.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := http.Header{}
	if a := r.Header.Get("Authorization"); a != "" {
		h.Set("Authorization", a)
	}
	server, resp, err := websocket.DefaultDialer.Dial(p.Target, h)
	if err != nil {
		code := http.StatusBadGateway
		if resp != nil {
			code = resp.StatusCode
		}
		http.Error(w, "upstream: "+err.Error(), code)
		return
	}
	client, err := p.upgrader.Upgrade(w, r, nil)
	if err != nil {
		server.Close()
		return
	}
	p.mu.Lock()
	p.conns[client] = struct{}{}
	p.conns[server] = struct{}{}
	cut := p.up.CutEvery
	p.mu.Unlock()
	var once sync.Once
	closeBoth := func(code int, text string) {
		once.Do(func() {
			msg := websocket.FormatCloseMessage(code, text)
			client.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			client.Close()
			server.Close()
			p.mu.Lock()
			delete(p.conns, client)
			delete(p.conns, server)
			p.mu.Unlock()
		})
	}
	if cut > 0 {
		d := cut/2 + time.Duration(rand.Int64N(int64(cut)))
		t := time.AfterFunc(d, func() { p.Cuts.Add(1); closeBoth(websocket.CloseGoingAway, "cut by fault proxy") })
		defer t.Stop()
	}
	p.wg.Add(2)
	go p.pump(server, client, true, closeBoth)
	p.pump(client, server, false, closeBoth)
}

// pump copies frames from src to dst with the faults of its direction.
func (p *Proxy) pump(dst, src *websocket.Conn, upstream bool, closeBoth func(int, string)) {
	defer p.wg.Done()
	type message struct {
		kind int // text or binary, kept as it came
		data []byte
	}
	var held *message
	var wmu sync.Mutex
	write := func(m message) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = dst.WriteMessage(m.kind, m.data)
	}
	for {
		kind, data, err := src.ReadMessage()
		if err != nil {
			code, text := websocket.CloseGoingAway, "peer gone"
			if ce, ok := err.(*websocket.CloseError); ok {
				code, text = ce.Code, ce.Text
			}
			if code == websocket.CloseNoStatusReceived || code == websocket.CloseAbnormalClosure || strings.Contains(err.Error(), "use of closed") {
				code = websocket.CloseGoingAway
			}
			closeBoth(code, text)
			return
		}
		b := message{kind, data}
		f := p.faults(upstream)
		if rand.Float64() < f.Drop {
			p.Dropped.Add(1)
			continue
		}
		if held == nil && rand.Float64() < f.Reorder {
			held = &b // goes out after the next frame
			p.Reordered.Add(1)
			continue
		}
		out := []message{b}
		if held != nil {
			out = append(out, *held)
			held = nil
		}
		if rand.Float64() < f.Duplicate {
			p.Duped.Add(1)
			out = append(out, b)
		}
		if f.MaxDelay > 0 {
			d := time.Duration(rand.Int64N(int64(f.MaxDelay)))
			frames := out
			time.AfterFunc(d, func() {
				for _, fr := range frames {
					write(fr)
				}
			})
			continue
		}
		for _, fr := range out {
			write(fr)
		}
	}
}

// CutAll closes every proxied connection now.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	p.CutAll()
	return err
}

package chatserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/internal/dbtest"
)

func TestDeadlinesExpireInOrderWithOneTimer(t *testing.T) {
	var mu sync.Mutex
	var expired []*conn
	d := newDeadlines(func(c *conn) { mu.Lock(); expired = append(expired, c); mu.Unlock() })
	defer d.close()
	cs := make([]*conn, 5)
	for i := range cs {
		cs[i] = &conn{}
	}
	now := time.Now()
	d.set(cs[0], now.Add(300*time.Millisecond))
	d.set(cs[1], now.Add(100*time.Millisecond))
	d.set(cs[2], now.Add(200*time.Millisecond))
	d.set(cs[3], now.Add(150*time.Millisecond))
	d.set(cs[4], now.Add(time.Hour))
	d.set(cs[3], now.Add(time.Hour)) // a beat re-arms it
	d.remove(cs[4])
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(expired)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(expired) != 3 || expired[0] != cs[1] || expired[1] != cs[2] || expired[2] != cs[0] {
		t.Fatalf("expired %d connections, want cs[1], cs[2], cs[0] in that order", len(expired))
	}
	if d.len() != 1 {
		t.Fatalf("%d deadlines left, want the re-armed one", d.len())
	}
}

type staticDirectory struct{}

func (staticDirectory) Authenticate(_ context.Context, token string) (User, error) {
	if token != "good" {
		return User{}, errors.New("bad token")
	}
	return User{ID: 1, Name: "alice"}, nil
}
func (staticDirectory) UserByName(context.Context, string) (User, error)  { return User{}, ErrNoUser }
func (staticDirectory) RoomsOf(context.Context, uint64) ([]string, error) { return nil, nil }

// A silent client is closed with 4008; one that pings stays.
func TestServerClosesSilentConnections(t *testing.T) {
	store, err := OpenStore("sqlite", dbtest.Engines(t)[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := New(Options{Store: store, Directory: staticDirectory{}, Logger: testLogger(),
		Deadline: func(interval, srtt time.Duration) time.Duration { return 400 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	dial := func() *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer good"}})
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	silent, talker := dial(), dial()
	defer silent.Close()
	defer talker.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				talker.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"ping","ts":1}`))
			}
		}
	}()
	go func() {
		for {
			if _, _, err := talker.ReadMessage(); err != nil {
				return
			}
		}
	}()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	var closeErr error
	for closeErr == nil {
		_, _, closeErr = silent.ReadMessage()
	}
	if !websocket.IsCloseError(closeErr, chat.CloseHeartbeat) {
		t.Fatalf("silent client: %v, want close %d", closeErr, chat.CloseHeartbeat)
	}
	time.Sleep(time.Second) // the talker outlives two silent deadlines
	if got := srv.Stats().Connections; got != 1 {
		t.Fatalf("%d connections open, want the pinging one", got)
	}
}

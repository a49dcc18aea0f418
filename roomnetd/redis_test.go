package roomnetd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"tailscale.com/tailcfg"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// health reads /healthz.
func health(t *testing.T, base string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// nextEvent waits for the first event of cl that keep accepts.
func nextEvent(t *testing.T, cl *chatclient.Client, d time.Duration, what string, keep func(chatclient.Event) bool) chatclient.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-cl.Events():
			if keep(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Two roomnetd processes on one PostgreSQL and one Redis (redis.url) are
// one chat service: a message sent on one reaches a member on the other,
// a kick handled by one cuts the member's chat on the other, and with
// Redis down both say degraded on /healthz, REST keeps working, a send
// waits (refused as retryable) and is stored once Redis is back.
func TestTwoNodesShareChatThroughRedis(t *testing.T) {
	shared, rs := sharedStores(t)
	a := roomnettest.New(t, shared)
	b := roomnettest.New(t, shared)
	ctx := roomnettest.Context(t, 120*time.Second)
	for _, h := range []*roomnettest.Harness{a, b} {
		status, body := health(t, h.URL)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "ok", body["status"])
	}

	alice, bob := a.User("alice"), a.User("bob")
	room := createRoom(t, alice, "nodes", 4)
	join(t, bob, room.ID)
	conv := chat.RoomConv(room.ID)
	ws := func(h *roomnettest.Harness) string { return "ws" + strings.TrimPrefix(h.URL, "http") + "/ws" }
	onA, err := chatclient.Dial(ctx, chatclient.Options{URL: ws(a), Token: alice.Token()})
	require.NoError(t, err)
	defer onA.Close()
	onB, err := chatclient.Dial(ctx, chatclient.Options{URL: ws(b), Token: bob.Token()})
	require.NoError(t, err)
	defer onB.Close()

	text := func(e chatclient.Event) bool {
		return e.Type == chatclient.EventMessage && e.Conv == conv && e.Msg.Kind == chat.KindText
	}
	for i := range 10 {
		p := onA.Send(conv, fmt.Sprint("from a ", i))
		<-p.Done()
		seq, err := p.Result()
		require.NoError(t, err)
		e := nextEvent(t, onB, 10*time.Second, "alice's message on node b", text)
		require.Equal(t, seq, e.Msg.Seq)
		require.Equal(t, fmt.Sprint("from a ", i), e.Msg.Body)
	}
	p := onB.Send(conv, "from b")
	<-p.Done()
	_, err = p.Result()
	require.NoError(t, err)
	e := nextEvent(t, onA, 10*time.Second, "bob's message on node a", func(e chatclient.Event) bool { return text(e) && e.Msg.From == "bob" })
	require.Equal(t, "from b", e.Msg.Body)

	// Redis down: degraded, REST works, a send waits.
	rs.Stop()
	for _, h := range []*roomnettest.Harness{a, b} {
		eventually(t, 15*time.Second, "degraded on redis", func() error {
			status, body := health(t, h.URL)
			if status != http.StatusOK || body["status"] != "degraded" || !strings.HasPrefix(body["reason"], "redis:") {
				return fmt.Errorf("%d %v", status, body)
			}
			return nil
		})
	}
	_, err = alice.Me(ctx)
	require.NoError(t, err, "REST keeps working without Redis")
	waiting := onA.Send(conv, "through the outage")
	select {
	case <-waiting.Done():
		_, err := waiting.Result()
		t.Fatalf("a send was resolved with Redis down: %v", err)
	case <-time.After(time.Second):
	}
	rs.Restart()
	for _, h := range []*roomnettest.Harness{a, b} {
		eventually(t, 15*time.Second, "ok again", func() error {
			if status, body := health(t, h.URL); status != http.StatusOK || body["status"] != "ok" {
				return fmt.Errorf("%d %v", status, body)
			}
			return nil
		})
	}
	select {
	case <-waiting.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the send made during the outage was not stored after Redis came back")
	}
	seq, err := waiting.Result()
	require.NoError(t, err)
	e = nextEvent(t, onB, 10*time.Second, "the outage's message on node b", func(e chatclient.Event) bool { return text(e) && e.Msg.Seq == seq })
	require.Equal(t, "through the outage", e.Msg.Body)

	// The admin panel's live view on node b shows what node a did.
	stream := adminEvents(t, ctx, b)

	// A kick handled by node a cuts bob's chat on node b.
	start := time.Now()
	require.NoError(t, alice.Kick(ctx, room.ID, "bob"))
	returned := time.Since(start)
	nextEvent(t, onB, 10*time.Second, "bob removed on node b", func(e chatclient.Event) bool {
		return e.Type == chatclient.EventRemoved && e.Conv == conv && e.Reason == "kicked"
	})
	t.Logf("kick through node a's REST: answered in %v, bob's session on node b removed %v after the call", returned, time.Since(start))
	for {
		select {
		case ev := <-stream:
			if ev["type"] == "member_kicked" && ev["room_id"] == room.ID {
				t.Logf("node b's admin event stream had node a's kick %v after the call", time.Since(start))
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("node b's admin event stream never showed the kick handled by node a")
		}
	}
}

// adminEvents opens a node's admin event stream, as the panel reads it,
// and returns its events.
func adminEvents(t *testing.T, ctx context.Context, h *roomnettest.Harness) <-chan map[string]any {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+"/api/v1/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+h.Admin.Token())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := make(chan map[string]any, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev map[string]any
				if json.Unmarshal([]byte(data), &ev) == nil {
					out <- ev
				}
			}
		}
	}()
	return out
}

// A relay's heartbeats go to whichever node the load balancer picks; every
// node must list the relay and serve it in its DERP map, and every node
// must drop it once it goes quiet.
func TestRelayHeartbeatsReachEveryNode(t *testing.T) {
	const token = "relay-token-for-tests"
	stores, _ := sharedStores(t)
	shared := func(s *roomnettest.Settings) {
		stores(s)
		s.Config.DERP.RelayToken = token
		s.Config.DERP.RelayTTL = 2 * time.Second
	}
	a := roomnettest.New(t, shared)
	b := roomnettest.New(t, shared)
	ctx := roomnettest.Context(t, 60*time.Second)
	hb := roomnet.RelayHeartbeat{RegionID: 901, RegionCode: "eu", RegionName: "Europe",
		Node: roomnet.RelayNode{Name: "901a", HostName: "relay.example.com", DERPPort: 443, STUNPort: 3478}}
	listed := func(h *roomnettest.Harness) (bool, error) {
		rs, err := h.Admin.Relays(ctx)
		if err != nil {
			return false, err
		}
		for _, r := range rs {
			if r.Node.Name == "901a" {
				return true, nil
			}
		}
		return false, nil
	}
	inMap := func(h *roomnettest.Harness) bool {
		resp, err := http.Get(h.URL + "/api/v1/derpmap")
		require.NoError(t, err)
		defer resp.Body.Close()
		var m tailcfg.DERPMap
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		return m.Regions[901] != nil
	}
	// Heartbeats only to node a, as a load balancer might send them.
	beat := func() { require.NoError(t, roomnet.NewClient(a.URL).WithToken(token).RelayHeartbeat(ctx, hb)) }
	beat()
	eventually(t, 5*time.Second, "node b lists the relay that beat on node a", func() error {
		if ok, err := listed(b); !ok || err != nil {
			return fmt.Errorf("not listed (%v)", err)
		}
		if !inMap(b) {
			return errors.New("not in b's DERP map")
		}
		return nil
	})
	for range 3 { // alive on both while it beats
		time.Sleep(time.Second)
		beat()
	}
	for _, h := range []*roomnettest.Harness{a, b} {
		ok, err := listed(h)
		require.NoError(t, err)
		require.True(t, ok, "the beating relay left a node's list")
	}
	// Quiet: both drop it after the TTL.
	eventually(t, 10*time.Second, "both nodes drop the quiet relay", func() error {
		for name, h := range map[string]*roomnettest.Harness{"a": a, "b": b} {
			if ok, _ := listed(h); ok || inMap(h) {
				return fmt.Errorf("node %s still has it", name)
			}
		}
		return nil
	})
}

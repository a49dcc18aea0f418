package chatclient_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/chat/internal/faultproxy"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// received collects what one client showed, per conversation, and the
// close codes of its sessions.
type received struct {
	mu     sync.Mutex
	msgs   map[string][]chat.Message
	closes map[int]int
}

func collect(cl *chatclient.Client) *received {
	r := &received{msgs: map[string][]chat.Message{}, closes: map[int]int{}}
	go func() {
		for e := range cl.Events() {
			switch {
			case e.Type == chatclient.EventMessage && e.Msg.Kind == chat.KindText:
				r.mu.Lock()
				r.msgs[e.Conv] = append(r.msgs[e.Conv], e.Msg)
				r.mu.Unlock()
			case e.Type == chatclient.EventDisconnected:
				r.mu.Lock()
				r.closes[e.Code]++
				r.mu.Unlock()
			}
		}
	}()
	return r
}

// closed counts the sessions the server closed with code.
func (r *received) closed(code int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closes[code]
}

func (r *received) snapshot() map[string][]chat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]chat.Message{}
	for k, v := range r.msgs {
		out[k] = append([]chat.Message(nil), v...)
	}
	return out
}

// faultScale is the size of TestNoMessageLostUnderFaults: the default
// fits CI (under -race too); ROOMNET_FAULT_MESSAGES and
// ROOMNET_FAULT_RESTARTS make the long run recorded in
// docs/benchmarks.md (100,000 messages, 10 restarts).
func faultScale(t *testing.T) (perUser, restarts int) {
	const clients = 12
	messages, restarts := 1200, 1 // the one restart kills the server
	if testing.Short() {
		messages = 600
	}
	if v := os.Getenv("ROOMNET_FAULT_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "ROOMNET_FAULT_MESSAGES")
		messages, restarts = n, 10
	}
	if v := os.Getenv("ROOMNET_FAULT_RESTARTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "ROOMNET_FAULT_RESTARTS")
		restarts = n
	}
	return max((messages+clients-1)/clients, 1), restarts
}

// Many clients in several rooms send, faster than the frame budget
// allows (the SDK paces them), through a proxy that drops, duplicates,
// delays and reorders frames both ways and cuts connections, while the
// server restarts: gracefully and killed outright, alternately. The
// checker then proves that every send was acknowledged, that every
// message the server acknowledged reached every member of its room
// exactly once and in seq order, that no send is reported sent without
// the server's ack, that nobody received another room's messages, and
// that the server never closed a client for flooding.
//
// Long mode (docs/benchmarks.md):
//
//	ROOMNET_FAULT_MESSAGES=100000 go test ./chat/chatclient -run TestNoMessageLostUnderFaults -v -timeout 60m
func TestNoMessageLostUnderFaults(t *testing.T) {
	const rooms, perRoom = 3, 4
	perUser, restarts := faultScale(t)
	began := time.Now()
	// Only the send rate is raised: the frame budget stays the default
	// (50 a second, burst 100), which the clients' offered rate exceeds.
	srv := startChild(t, 100000)
	ctx := roomnettest.Context(t, 2*time.Hour)
	proxy, err := faultproxy.New(srv.wsURL())
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	faults := faultproxy.Faults{Drop: 0.05, Duplicate: 0.05, Reorder: 0.05, MaxDelay: 20 * time.Millisecond, CutEvery: 4 * time.Second}
	proxy.Set(faults, faults)

	type member struct {
		name string
		conv string
		cl   *chatclient.Client
		got  *received
	}
	var members []*member
	for r := range rooms {
		host := srv.user(ctx, fmt.Sprintf("host%d", r))
		room, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: fmt.Sprintf("room %d", r), MaxPlayers: perRoom, Public: true})
		require.NoError(t, err)
		conv := chat.RoomConv(room.ID)
		users := []*roomnet.Client{host}
		for i := 1; i < perRoom; i++ {
			u := srv.user(ctx, fmt.Sprintf("p%d-%d", r, i))
			_, err := u.Join(ctx, room.ID, "")
			require.NoError(t, err)
			users = append(users, u)
		}
		for _, u := range users {
			me, err := u.Me(ctx)
			require.NoError(t, err)
			m := &member{name: me.Username, conv: conv}
			m.cl = dial(t, proxy.URL(), u, func(o *chatclient.Options) {
				o.SyncEvery = time.Second
				o.GapTimeout = 200 * time.Millisecond
				o.RequestTimeout = 2 * time.Second
				o.SendBackoff = chatclient.Backoff{Initial: 300 * time.Millisecond, Factor: 1.5, Max: 2 * time.Second, Jitter: 0.3}
			})
			m.got = collect(m.cl)
			members = append(members, m)
		}
	}

	type ack struct {
		conv, cmid, body string
	}
	var mu sync.Mutex
	acked := map[string]map[uint64]ack{} // conv → seq → message
	var wg sync.WaitGroup
	sending := make(chan struct{})
	sendStart := time.Now()
	for _, m := range members {
		wg.Add(1)
		go func(m *member) {
			defer wg.Done()
			var ps []*chatclient.Pending
			for i := range perUser {
				ps = append(ps, m.cl.Send(m.conv, fmt.Sprintf("%s #%d", m.name, i)))
				time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond) // ~66 a second: over the budget
			}
			for _, p := range ps {
				seq, err := p.Result()
				if err != nil {
					t.Errorf("%s: send not acknowledged: %v", m.name, err)
					continue
				}
				mu.Lock()
				if acked[p.Conv] == nil {
					acked[p.Conv] = map[uint64]ack{}
				}
				if prev, dup := acked[p.Conv][seq]; dup {
					t.Errorf("seq %d of %s acked twice: %q and %q", seq, p.Conv, prev.body, p.Body)
				}
				acked[p.Conv][seq] = ack{p.Conv, p.ClientMsgID, p.Body}
				mu.Unlock()
			}
		}(m)
	}
	go func() { wg.Wait(); close(sending) }()
	// Restarts spread over the expected sending time (the clients are
	// paced at about 35 sends a second each), odd ones abrupt.
	every := max(time.Duration(perUser)*time.Second/35/time.Duration(restarts+1), time.Second)
	abrupt, midStream := 0, 0
	for i := range restarts {
		select {
		case <-sending:
		case <-time.After(every):
			midStream++
		}
		kill := i%2 == 0
		if kill {
			abrupt++
		}
		srv.restart(kill)
	}
	<-sending
	sendTime := time.Since(sendStart)
	require.False(t, t.Failed())

	// Faults off; everyone converges.
	proxy.Set(faultproxy.Faults{}, faultproxy.Faults{})
	total := 0
	for _, v := range acked {
		total += len(v)
	}
	require.Equal(t, rooms*perRoom*perUser, total, "every send acknowledged once")
	deadline := time.Now().Add(90 * time.Second)
	for _, m := range members {
		for {
			got := m.got.snapshot()[m.conv]
			if len(got) >= len(acked[m.conv]) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, m := range members {
		snap := m.got.snapshot()
		for conv := range snap {
			require.Equal(t, m.conv, conv, "%s received messages of another room", m.name)
		}
		got := snap[m.conv]
		want := acked[m.conv]
		seen := map[uint64]bool{}
		var last uint64
		for _, msg := range got {
			require.False(t, seen[msg.Seq], "%s got seq %d twice", m.name, msg.Seq)
			seen[msg.Seq] = true
			require.Greater(t, msg.Seq, last, "%s: out of order", m.name)
			last = msg.Seq
			a, ok := want[msg.Seq]
			require.True(t, ok, "%s shown a message the server never acked: %+v", m.name, msg)
			require.Equal(t, a.body, msg.Body)
			require.Equal(t, a.cmid, msg.ClientMsgID)
		}
		var missing []uint64
		for seq := range want {
			if !seen[seq] {
				missing = append(missing, seq)
			}
		}
		sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
		require.Empty(t, missing, "%s never received these acked seqs of %s", m.name, m.conv)
	}
	var resends, gaps, dups, reconnects, limited, failed, flooded int
	for _, m := range members {
		s := m.cl.Stats()
		resends += s.Resends
		gaps += s.GapFills
		dups += s.Duplicates
		reconnects += s.Reconnects
		limited += s.RateLimited
		failed += s.Failed
		flooded += m.got.closed(chat.ClosePolicy)
	}
	t.Logf("messages %d (%d clients × %d) in %v (sending %v); restarts %d (%d abrupt, %d mid-stream); faults: dropped %d, duplicated %d, reordered %d, cuts %d; clients: resends %d, rate_limited %d, failed %d, closed for flooding %d, gap fills %d, duplicates discarded %d, reconnects %d",
		total, len(members), perUser, time.Since(began).Round(time.Second), sendTime.Round(time.Second), restarts, abrupt, midStream,
		proxy.Dropped.Load(), proxy.Duped.Load(), proxy.Reordered.Load(), proxy.Cuts.Load(), resends, limited, failed, flooded, gaps, dups, reconnects)
	require.Positive(t, proxy.Dropped.Load())
	require.Positive(t, proxy.Duped.Load())
	require.Positive(t, reconnects)
	require.Zero(t, failed)
	require.Zero(t, flooded, "the server closed a paced client for flooding")
	require.Positive(t, abrupt)
}

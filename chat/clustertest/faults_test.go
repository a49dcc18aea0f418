package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/chat/internal/faultproxy"
	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/redistest"
	"github.com/roomnet/roomnet/roomnet"
)

// envMessages sets how many messages the 3-node fault checker sends
// (docs/benchmarks.md records a run with 20000); the default is what CI
// affords.
const envMessages = "ROOMNET_CLUSTER_MESSAGES"

// Three roomnetd processes on one PostgreSQL and one Redis; the members
// of several rooms are spread over the nodes, each through a proxy that
// drops, duplicates, delays and reorders frames both ways and cuts
// connections. Mid-run one node is killed with SIGKILL and restarted,
// then Redis is restarted empty, then Redis is flushed, each with traffic
// before and after it. The checker then proves that every message a
// server acknowledged reached every member of its room exactly once, in
// seq order, with the acknowledged body; that no seq was acknowledged
// twice; and that PostgreSQL holds exactly the acknowledged messages,
// none twice.
func TestNoMessageLostAcrossThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three roomnetd processes and runs thousands of messages")
	}
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("several nodes share PostgreSQL: set %s", dbtest.EnvPostgres)
	}
	// The default (CI, under -race: every node is the race-built test
	// binary) is 12 members; the long mode 24.
	rooms, perRoom, total := 3, 4, 1800
	if v := os.Getenv(envMessages); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, envMessages)
		rooms, perRoom, total = 4, 6, n
	}
	perUser := (total + rooms*perRoom - 1) / (rooms * perRoom)

	rs := redistest.Start(t)
	cc := clusterConfig{dsn: dsn, redisURL: rs.URL(), extra: []string{
		"--auth-login-per-minute", "100000",
		"--chat-send-per-sec", "1000",
	}}
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, startNode(t, fmt.Sprintf("node%d", i+1), cc))
	}
	var proxies []*faultproxy.Proxy
	faults := faultproxy.Faults{Drop: 0.03, Duplicate: 0.03, Reorder: 0.03, MaxDelay: 20 * time.Millisecond, CutEvery: 4 * time.Second}
	for _, n := range nodes {
		p, err := faultproxy.New(n.WSURL())
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		p.Set(faults, faults)
		proxies = append(proxies, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// Rooms are created and joined on node1 (each node embeds its own
	// Headscale here); chat membership is in PostgreSQL, so every node
	// serves every member.
	anon := roomnet.NewClient(nodes[0].URL())
	var members []*member
	var convs []string
	for r := range rooms {
		host := user(t, ctx, anon, fmt.Sprintf("host%d", r))
		room, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: fmt.Sprintf("room %d", r), MaxPlayers: perRoom, Public: true})
		require.NoError(t, err)
		conv := chat.RoomConv(room.ID)
		convs = append(convs, conv)
		users := []*roomnet.Client{host}
		for i := 1; i < perRoom; i++ {
			u := user(t, ctx, anon, fmt.Sprintf("p%d-%d", r, i))
			_, err := u.Join(ctx, room.ID, "")
			require.NoError(t, err)
			users = append(users, u)
		}
		for i, u := range users {
			proxy := proxies[(r+i)%len(proxies)]
			cl, err := chatclient.Dial(ctx, chatclient.Options{
				URL: proxy.URL(), Token: u.Token(),
				SyncEvery: time.Second, GapTimeout: 200 * time.Millisecond, RequestTimeout: 2 * time.Second,
				SendBackoff: chatclient.Backoff{Initial: 300 * time.Millisecond, Factor: 1.5, Max: 2 * time.Second, Jitter: 0.3},
				MaxAttempts: 1000,
			})
			require.NoError(t, err)
			t.Cleanup(func() { cl.Close() })
			name := fmt.Sprintf("%s@node%d", cl.User(), (r+i)%len(proxies)+1)
			members = append(members, &member{name: name, conv: conv, cl: cl, got: collect(cl)})
		}
	}

	// The faults run in phases. Each is started once enough messages have
	// been sent, and the next quarter of each member's messages waits for
	// it to be over: every fault has traffic before, during and after it.
	var sent atomic.Int64
	phases := make([]chan struct{}, 3)
	for i := range phases {
		phases[i] = make(chan struct{})
	}
	start := time.Now()
	var faultLog []string
	logFault := func(what string) {
		faultLog = append(faultLog, fmt.Sprintf("%s at %v (%d sent)", what, time.Since(start).Round(time.Millisecond), sent.Load()))
	}
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		waitSent := func(frac float64) {
			for float64(sent.Load()) < frac*float64(perUser*len(members)) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitSent(0.15)
		victim := nodes[2]
		victim.kill()
		logFault("node3 killed (SIGKILL)")
		time.Sleep(time.Second)
		victim.start()
		logFault("node3 restarted and healthy")
		close(phases[0])
		waitSent(0.40)
		rs.Restart()
		logFault("redis restarted empty")
		close(phases[1])
		waitSent(0.65)
		rs.Flush()
		logFault("redis flushed")
		close(phases[2])
	}()

	acks := newAcked()
	var wg sync.WaitGroup
	var failures atomic.Int64
	for _, m := range members {
		wg.Add(1)
		go func(m *member) {
			defer wg.Done()
			var ps []*chatclient.Pending
			for i := range perUser {
				if q := i * 4 / perUser; q > 0 {
					select {
					case <-phases[q-1]:
					case <-ctx.Done():
						return
					}
				}
				ps = append(ps, m.cl.Send(m.conv, fmt.Sprintf("%s #%d", m.name, i)))
				sent.Add(1)
				time.Sleep(time.Duration(rand.IntN(130)) * time.Millisecond)
			}
			for _, p := range ps {
				select {
				case <-p.Done():
				case <-ctx.Done():
					t.Errorf("%s: %q never resolved", m.name, p.Body)
					return
				}
				seq, err := p.Result()
				if err != nil {
					if failures.Add(1) <= 10 {
						t.Errorf("%s: send not acknowledged: %v", m.name, err)
					}
					continue
				}
				if err := acks.add(p.Conv, seq, p.ClientMsgID, p.Body); err != nil {
					t.Error(err)
				}
			}
		}(m)
	}
	wg.Wait()
	<-faultsDone
	sending := time.Since(start)
	require.Zero(t, failures.Load(), "sends the SDK gave up")
	require.False(t, t.Failed())
	require.Equal(t, perUser*len(members), acks.total(), "every send acknowledged once")

	// Faults off; everyone converges.
	for _, p := range proxies {
		p.Set(faultproxy.Faults{}, faultproxy.Faults{})
	}
	checkDelivered(t, members, acks, 2*time.Minute)
	checkStored(t, dsn, convs, acks)

	var resends, gaps, dups, reconnects int
	for _, m := range members {
		s := m.cl.Stats()
		resends += s.Resends
		gaps += s.GapFills
		dups += s.Duplicates
		reconnects += s.Reconnects
	}
	var dropped, duped, reordered, cuts int64
	for _, p := range proxies {
		dropped += p.Dropped.Load()
		duped += p.Duped.Load()
		reordered += p.Reordered.Load()
		cuts += p.Cuts.Load()
	}
	var conflicts float64
	for _, n := range nodes {
		c, err := n.metric("roomnet_chat_seq_conflicts_total")
		require.NoError(t, err)
		conflicts += c
	}
	tombstones := countTombstones(t, dsn, convs)
	t.Logf("%d messages from %d members in %d rooms over 3 nodes, acknowledged in %v, all delivered %v after the start",
		acks.total(), len(members), rooms, sending.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, f := range faultLog {
		t.Logf("fault: %s", f)
	}
	t.Logf("proxies: dropped %d, duplicated %d, reordered %d, cuts %d; clients: resends %d, gap fills %d, duplicates discarded %d, reconnects %d; nodes: seq conflicts %v (counters since each node's last start), tombstones stored %d",
		dropped, duped, reordered, cuts, resends, gaps, dups, reconnects, conflicts, tombstones)
	require.Positive(t, dropped)
	require.Positive(t, duped)
	require.Positive(t, cuts)
	require.Positive(t, reconnects)
	require.Len(t, faultLog, 4)
}

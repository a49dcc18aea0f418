package roomnetd_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// BenchmarkKickAcrossNodes measures issue #16's "membership across
// nodes": two roomnetd nodes on one PostgreSQL and one Redis; each round a
// room is created and joined through node A, the member's chat socket
// connects to node B (and is synced: it may read the room), the host
// kicks the member through node A's REST API, and the clock stops when
// node B tells the member's socket it was removed (after which node B
// refuses the room to it). Reported: p50/p99/max from the start of the
// kick call ("from_call"), and how much of that came after the call had
// returned ("after_return"; 0 when node B was first). Run with
// -benchtime=200x.
func BenchmarkKickAcrossNodes(b *testing.B) {
	shared, _ := sharedStores(b)
	a := roomnettest.New(b, shared)
	nb := roomnettest.New(b, shared)
	ctx := context.Background()
	host, member := a.User("host"), a.User("member")
	wsB := "ws" + strings.TrimPrefix(nb.URL, "http") + "/ws"

	var fromCall, afterReturn []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		room, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: fmt.Sprint("kick ", i), MaxPlayers: 4, Public: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := member.Join(ctx, room.ID, ""); err != nil {
			b.Fatal(err)
		}
		conv := chat.RoomConv(room.ID)
		cl, err := chatclient.Dial(ctx, chatclient.Options{URL: wsB, Token: member.Token()})
		if err != nil {
			b.Fatal(err)
		}
		waitEvent(b, cl, "synced on node b", func(e chatclient.Event) bool { return e.Type == chatclient.EventSynced })
		b.StartTimer()
		start := time.Now()
		if err := host.Kick(ctx, room.ID, "member"); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		waitEvent(b, cl, "removed on node b", func(e chatclient.Event) bool {
			return e.Type == chatclient.EventRemoved && e.Conv == conv && e.Reason == "kicked"
		})
		removed := time.Now()
		b.StopTimer()
		fromCall = append(fromCall, removed.Sub(start))
		afterReturn = append(afterReturn, max(0, removed.Sub(returned)))
		cl.Close()
		if err := host.CloseRoom(ctx, room.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	report := func(name string, d []time.Duration) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		q := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000 }
		b.ReportMetric(q(0.5), name+"_p50_ms")
		b.ReportMetric(q(0.99), name+"_p99_ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"_max_ms")
	}
	report("from_call", fromCall)
	report("after_return", afterReturn)
}

// waitEvent waits up to 10 s for the first event of cl that keep accepts.
func waitEvent(b *testing.B, cl *chatclient.Client, what string, keep func(chatclient.Event) bool) {
	b.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-cl.Events():
			if keep(e) {
				return
			}
		case <-deadline:
			b.Fatalf("timed out waiting for %s", what)
		}
	}
}

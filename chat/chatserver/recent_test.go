package chatserver

import (
	"context"
	"testing"
	"time"

	"github.com/roomnet/roomnet/chat"
)

// A retry is answered with the first send's seq whether the node still
// remembers the send or not: beyond its memory the store's unique index
// refuses the copy, which takes a tombstone, not a second message.
func TestRetriesBeyondTheDedupeMemoryAreStoredOnce(t *testing.T) {
	srv := startServer(t, Options{DedupeMemory: 1, StormEnter: 1e9})
	const lobby = "lobby:retry"
	c := dialRaw(t, srv.url, "u1", nil)
	c.send(t, chat.Frame{Type: chat.TypeJoin, Conv: lobby, Ref: "j"})
	sent := func(id string) []uint64 {
		var seqs []uint64
		for _, f := range c.snapshot() {
			if f.Type == chat.TypeSent && f.Ref == id {
				seqs = append(seqs, f.Seq)
			}
		}
		return seqs
	}
	send := func(id, body string, answers int) uint64 {
		t.Helper()
		c.send(t, chat.Frame{Type: chat.TypeSend, Conv: lobby, ClientMsgID: id, Body: body})
		waitFor(t, 10*time.Second, "the ack of "+id, func() bool { return len(sent(id)) >= answers })
		return sent(id)[answers-1]
	}
	a := send("a", "first", 1)
	b := send("b", "second", 1) // "a" is forgotten: memory holds one send
	if got := send("a", "first again", 2); got != a {
		t.Fatalf("a retry beyond the node's memory got seq %d, want the first send's %d", got, a)
	}
	if got := send("b", "second again", 2); got != b {
		t.Fatalf("a remembered retry got seq %d, want %d", got, b)
	}
	msgs, err := srv.store.HistoryBefore(context.Background(), lobby, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]int{}
	for _, m := range msgs {
		if m.Kind == chat.KindText {
			texts[m.Body]++
		}
	}
	if len(texts) != 2 || texts["first"] != 1 || texts["second"] != 1 {
		t.Fatalf("stored %v, want each message once and no retry body", texts)
	}
	if n := msgs[len(msgs)-1]; n.Kind != chat.KindTombstone {
		t.Fatalf("the refused copy's seq %d is %q, want a tombstone so gap fills do not wait", n.Seq, n.Kind)
	}
}

package clustertest

import (
	"database/sql"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
)

// received collects the text messages one client showed, per conversation.
type received struct {
	mu   sync.Mutex
	msgs map[string][]chat.Message
}

func collect(cl *chatclient.Client) *received {
	r := &received{msgs: map[string][]chat.Message{}}
	go func() {
		for e := range cl.Events() {
			if e.Type == chatclient.EventMessage && e.Msg.Kind == chat.KindText {
				r.mu.Lock()
				r.msgs[e.Conv] = append(r.msgs[e.Conv], e.Msg)
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *received) of(conv string) []chat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chat.Message(nil), r.msgs[conv]...)
}

func (r *received) convs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for c := range r.msgs {
		out = append(out, c)
	}
	return out
}

// acked is what the servers acknowledged: conv → seq → message.
type acked struct {
	mu sync.Mutex
	m  map[string]map[uint64]ackedMsg
}

type ackedMsg struct{ cmid, body string }

func newAcked() *acked { return &acked{m: map[string]map[uint64]ackedMsg{}} }

// add records an ack; a seq acknowledged twice is an error.
func (a *acked) add(conv string, seq uint64, cmid, body string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[conv] == nil {
		a.m[conv] = map[uint64]ackedMsg{}
	}
	if prev, dup := a.m[conv][seq]; dup {
		return fmt.Errorf("seq %d of %s acknowledged twice: %q and %q", seq, conv, prev.body, body)
	}
	a.m[conv][seq] = ackedMsg{cmid, body}
	return nil
}

func (a *acked) of(conv string) map[uint64]ackedMsg {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[conv]
}

func (a *acked) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, v := range a.m {
		n += len(v)
	}
	return n
}

// member is one chat client of one conversation.
type member struct {
	name, conv string
	cl         *chatclient.Client
	got        *received
}

// checkDelivered waits up to d for every member to show as many messages
// as were acked in its conversation, then checks that each member showed
// every acked message exactly once, in seq order, with the acked body and
// client id, and nothing else.
func checkDelivered(t *testing.T, members []*member, acks *acked, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, m := range members {
		for len(m.got.of(m.conv)) < len(acks.of(m.conv)) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, m := range members {
		for _, c := range m.got.convs() {
			if c != m.conv {
				t.Errorf("%s received messages of %s, not its conversation", m.name, c)
			}
		}
		want := acks.of(m.conv)
		seen := map[uint64]bool{}
		var last uint64
		for _, msg := range m.got.of(m.conv) {
			if seen[msg.Seq] {
				t.Errorf("%s got seq %d of %s twice", m.name, msg.Seq, m.conv)
			}
			seen[msg.Seq] = true
			if msg.Seq <= last {
				t.Errorf("%s: seq %d after %d: out of order", m.name, msg.Seq, last)
			}
			last = msg.Seq
			a, ok := want[msg.Seq]
			if !ok {
				t.Errorf("%s shown a message never acknowledged: %+v", m.name, msg)
				continue
			}
			if a.body != msg.Body || a.cmid != msg.ClientMsgID {
				t.Errorf("%s: seq %d is %q (%s), acknowledged as %q (%s)", m.name, msg.Seq, msg.Body, msg.ClientMsgID, a.body, a.cmid)
			}
		}
		var missing []uint64
		for seq := range want {
			if !seen[seq] {
				missing = append(missing, seq)
			}
		}
		sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
		if len(missing) > 0 {
			t.Errorf("%s never received %d acknowledged seqs of %s: %v", m.name, len(missing), m.conv, head(missing, 20))
		}
	}
}

// checkStored compares PostgreSQL's text messages of each conversation
// with the acks: the same seqs with the same client ids, no client id
// stored twice, nothing stored that was not acknowledged.
func checkStored(t *testing.T, dsn string, convs []string, acks *acked) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, conv := range convs {
		rows, err := db.Query(`SELECT seq, client_msg_id FROM chat_messages WHERE conv = $1 AND kind = $2`, conv, chat.KindText)
		if err != nil {
			t.Fatal(err)
		}
		want := acks.of(conv)
		cmids := map[string]uint64{}
		n := 0
		for rows.Next() {
			var seq uint64
			var cmid string
			if err := rows.Scan(&seq, &cmid); err != nil {
				t.Fatal(err)
			}
			n++
			if other, dup := cmids[cmid]; dup {
				t.Errorf("%s: client id %s stored twice, seqs %d and %d", conv, cmid, other, seq)
			}
			cmids[cmid] = seq
			if a, ok := want[seq]; !ok || a.cmid != cmid {
				t.Errorf("%s: stored seq %d (%s) was not acknowledged as such (%+v)", conv, seq, cmid, a)
			}
		}
		rows.Close()
		if n != len(want) {
			t.Errorf("%s: %d text messages stored, %d acknowledged", conv, n, len(want))
		}
	}
}

func head(s []uint64, n int) []uint64 {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// countTombstones counts the tombstones stored in convs: seqs a node
// allocated and never wrote (a failed write, or a hole a pull filled).
func countTombstones(t *testing.T, dsn string, convs []string) int {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	total := 0
	for _, conv := range convs {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM chat_messages WHERE conv = $1 AND kind = $2`, conv, chat.KindTombstone).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

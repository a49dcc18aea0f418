package seqbuf

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/roomnet/roomnet/chat"
)

func msg(seq uint64) chat.Message { return chat.Message{Seq: seq, Kind: chat.KindText} }

func seqs(ms []chat.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func TestPushOrdersDedupesAndSkipsTombstones(t *testing.T) {
	now := time.Unix(0, 0)
	cases := []struct {
		name  string
		start uint64
		in    []chat.Message
		want  []uint64
		dups  int
		pos   uint64
	}{
		{"in order", 0, []chat.Message{msg(1), msg(2), msg(3)}, []uint64{1, 2, 3}, 0, 3},
		{"reversed", 0, []chat.Message{msg(3), msg(2), msg(1)}, []uint64{1, 2, 3}, 0, 3},
		{"duplicates", 0, []chat.Message{msg(1), msg(1), msg(3), msg(3), msg(2), msg(2)}, []uint64{1, 2, 3}, 3, 3},
		{"below start", 5, []chat.Message{msg(4), msg(5), msg(6)}, []uint64{6}, 2, 6},
		{"gap stays", 0, []chat.Message{msg(1), msg(3), msg(4)}, []uint64{1}, 0, 1},
		{"tombstone advances silently", 0, []chat.Message{msg(1), {Seq: 2, Kind: chat.KindTombstone}, msg(3)}, []uint64{1, 3}, 0, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := New(100)
			b.Start(tc.start)
			var got []uint64
			for _, m := range tc.in {
				got = append(got, seqs(b.Push(m, now))...)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("released %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("released %v, want %v", got, tc.want)
				}
			}
			if b.Duplicates != tc.dups || b.Position() != tc.pos {
				t.Fatalf("dups %d pos %d, want %d %d", b.Duplicates, b.Position(), tc.dups, tc.pos)
			}
		})
	}
}

func TestUnknownPositionHoldsUntilStart(t *testing.T) {
	b := New(10)
	if got := b.Push(msg(41), time.Now()); got != nil || b.Known() {
		t.Fatalf("released %v before the position was known", got)
	}
	b.Push(msg(39), time.Now())
	b.Push(msg(40), time.Now())
	got := seqs(b.Start(39))
	if len(got) != 2 || got[0] != 40 || got[1] != 41 {
		t.Fatalf("Start released %v, want [40 41]", got)
	}
}

func TestGapTimeoutAndBound(t *testing.T) {
	t0 := time.Unix(100, 0)
	b := New(2)
	b.Start(0)
	b.Push(msg(2), t0)
	if b.GapOpen(t0.Add(100*time.Millisecond), 300*time.Millisecond) {
		t.Fatal("gap reported open too early")
	}
	if !b.GapOpen(t0.Add(301*time.Millisecond), 300*time.Millisecond) {
		t.Fatal("gap not reported open after the timeout")
	}
	b.Push(msg(3), t0)
	b.Push(msg(4), t0) // over the bound: dropped, refetched later
	if b.Buffered() != 2 {
		t.Fatalf("buffered %d, want the bound 2", b.Buffered())
	}
	if got := seqs(b.Push(msg(1), t0)); len(got) != 3 || got[2] != 3 {
		t.Fatalf("released %v", got)
	}
	if b.GapOpen(t0.Add(time.Hour), time.Millisecond) {
		t.Fatal("no gap left")
	}
}

// Any permutation with duplicates releases 1..n exactly once, in order.
func TestRandomPermutations(t *testing.T) {
	for trial := range 200 {
		n := 1 + rand.IntN(60)
		var in []chat.Message
		for s := 1; s <= n; s++ {
			in = append(in, msg(uint64(s)))
			if rand.IntN(3) == 0 {
				in = append(in, msg(uint64(s)))
			}
		}
		rand.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		b := New(1000)
		b.Start(0)
		var got []uint64
		for _, m := range in {
			got = append(got, seqs(b.Push(m, time.Now()))...)
		}
		if len(got) != n {
			t.Fatalf("trial %d: released %d of %d", trial, len(got), n)
		}
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("trial %d: out of order: %v", trial, got)
			}
		}
	}
}

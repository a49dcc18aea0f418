package chat

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestHeartbeatIntervalAdaptsWithinBounds(t *testing.T) {
	cases := []struct {
		srtt, rttvar time.Duration
		lo, hi       time.Duration
	}{
		{0, 0, MaxHeartbeat, MaxHeartbeat},
		{10 * time.Millisecond, 2 * time.Millisecond, 26 * time.Second, 30 * time.Second},
		{250 * time.Millisecond, 0, 15 * time.Second, 15 * time.Second},
		{time.Second, 200 * time.Millisecond, MinHeartbeat, 7 * time.Second},
		{10 * time.Second, 5 * time.Second, MinHeartbeat, MinHeartbeat},
	}
	for _, c := range cases {
		got := HeartbeatInterval(c.srtt, c.rttvar)
		if got < c.lo || got > c.hi {
			t.Errorf("HeartbeatInterval(%s, %s) = %s, want in [%s, %s]", c.srtt, c.rttvar, got, c.lo, c.hi)
		}
	}
	prev := MaxHeartbeat + 1
	for rtt := time.Millisecond; rtt < 5*time.Second; rtt *= 2 {
		got := HeartbeatInterval(rtt, rtt/4)
		if got > prev {
			t.Fatalf("interval must not grow with RTT: %s at %s after %s", got, rtt, prev)
		}
		prev = got
	}
}

func TestDeadlineIsMoreTolerantOnPoorNetworks(t *testing.T) {
	if MissedBeats(50*time.Millisecond) >= MissedBeats(2*time.Second) {
		t.Fatal("a poor network must be allowed more missed beats")
	}
	good := Deadline(10*time.Second, 50*time.Millisecond)
	poor := Deadline(10*time.Second, 2*time.Second)
	if poor <= good {
		t.Fatalf("deadline poor %s <= good %s", poor, good)
	}
	if d := Deadline(time.Hour, 0); d > time.Duration(MissedBeats(0)+1)*MaxHeartbeat+time.Second {
		t.Fatalf("a client cannot stretch the deadline past the bound: %s", d)
	}
}

func TestRTTEstimator(t *testing.T) {
	var e RTTEstimator
	e.Add(100 * time.Millisecond)
	if e.SRTT != 100*time.Millisecond || e.RTTVar != 50*time.Millisecond {
		t.Fatalf("first sample: %+v", e)
	}
	for range 50 {
		e.Add(20 * time.Millisecond)
	}
	if e.SRTT > 25*time.Millisecond || e.RTTVar > 5*time.Millisecond {
		t.Fatalf("does not converge: %+v", e)
	}
	e.Add(-time.Second)
	if e.SRTT <= 0 {
		t.Fatal("negative samples must be ignored")
	}
}

func TestConvKind(t *testing.T) {
	good := map[string]string{"room:abc123": KindRoom, "lobby:minecraft": KindLobby, "lobby:a.b-c_d": KindLobby, "dm:2:10": KindDirect}
	for conv, kind := range good {
		if k, ok := ConvKind(conv); !ok || k != kind {
			t.Errorf("ConvKind(%q) = %q %v", conv, k, ok)
		}
	}
	for _, bad := range []string{"", "room", "room:", "room:A B", "dm:3:2", "dm:2:2", "dm:02:3", "dm:x:3", "dm:1", "chan:x", "lobby:" + strings.Repeat("a", 80)} {
		if _, ok := ConvKind(bad); ok {
			t.Errorf("ConvKind(%q) accepted", bad)
		}
	}
	if DirectConv(9, 3) != "dm:3:9" || DirectConv(3, 9) != "dm:3:9" {
		t.Fatal("DirectConv is not symmetric")
	}
}

func TestDecodeRefusesBadFrames(t *testing.T) {
	for _, in := range []string{``, `{}`, `[]`, `{"type":"send"} {}`, `{"type":"send","x":1}`, `{"type":1}`, `{"type":"send","seq":-1}`, strings.Repeat(" ", MaxFrameBytes+1)} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrDecode) {
			t.Errorf("Decode(%.40q) = %v, want ErrDecode", in, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"send","conv":"room:abc","client_msg_id":"m1","body":"hi"}`))
	f.Add([]byte(`{"v":1,"type":"sync","positions":{"room:abc":4}}`))
	f.Add([]byte(`{"v":1,"type":"msg","msg":{"conv":"lobby:x","seq":3,"kind":"text","ts":1}}`))
	f.Add([]byte(`{"v":1,"type":"synced","convs":[{"conv":"dm:1:2","max_seq":9,"read_seq":3,"unread":6}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(fr)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v\n%s", err, out)
		}
		out2, _ := Encode(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip not stable:\n%s\n%s", out, out2)
		}
	})
}

// A history frame's after of 0 is not the same as none, both ways; the
// fields a frame type always carries are written even when zero.
func TestAfterZeroAndAlwaysPresentFields(t *testing.T) {
	f, err := Decode([]byte(`{"v":1,"type":"history","conv":"room:a","after":0}`))
	if err != nil || !f.HasAfter {
		t.Fatalf("after 0: %+v %v", f, err)
	}
	if f, _ := Decode([]byte(`{"v":1,"type":"history","conv":"room:a"}`)); f.HasAfter {
		t.Fatal("no after must page backwards")
	}
	b, _ := Encode(Frame{Type: TypeHistory, Conv: "room:a", HasAfter: true})
	if !strings.Contains(string(b), `"after":0`) {
		t.Fatalf("encoded %s", b)
	}
	for _, tc := range []struct {
		f    Frame
		want string
	}{
		{Frame{Type: TypeJoined, Conv: "lobby:x"}, `"seq":0`},
		{Frame{Type: TypePage, Conv: "lobby:x"}, `"has_more":false`},
		{Frame{Type: TypePage, Conv: "lobby:x"}, `"messages":[]`},
		{Frame{Type: TypeSynced}, `"convs":[]`},
	} {
		b, err := Encode(tc.f)
		if err != nil || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %s lacks %s (%v)", tc.f.Type, b, tc.want, err)
		}
		if _, err := Decode(b); err != nil {
			t.Errorf("%s does not decode: %v", b, err)
		}
	}
}

func TestValidText(t *testing.T) {
	for in, want := range map[string]bool{
		`{"body":"plain é 😀"}`:        true,
		`{"body":"\ud83d\ude00"}`:     true,
		`{"body":"\\ud800"}`:          true, // an escaped backslash, then text
		`{"body":"\u00e9\n"}`:         true,
		"{\"body\":\"a\xffb\"}":       false,
		`{"body":"\ud800"}`:           false,
		`{"body":"\udc00\ud800"}`:     false,
		`{"body":"\ud800\u0041"}`:     false,
		`{"body":"\ud83d`:             false,
		`{"body":"\uZZZZ"}`:           false,
		"{\"body\":\"\xed\xa0\x80\"}": false, // a surrogate in raw UTF-8
	} {
		if got := ValidText([]byte(in)); got != want {
			t.Errorf("ValidText(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzValidText(f *testing.F) {
	for _, s := range []string{`{"body":"\ud83d\ude00"}`, `"\ud800"`, `\\u`, "\xff", `\u12`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidText(b) && !utf8.Valid(b) {
			t.Fatalf("%q passed but is not UTF-8", b)
		}
	})
}

func TestPeekReadsWhatAnErrorNames(t *testing.T) {
	f := Peek([]byte(`{"v":1,"type":"send","conv":"room:a","client_msg_id":"c1","from":"admin"}`))
	if f.Type != TypeSend || f.Conv != "room:a" || f.ClientMsgID != "c1" {
		t.Fatalf("peeked %+v", f)
	}
	if f := Peek([]byte(`{"ref":7,"conv":["x"]}`)); f.Ref != "" || f.Conv != "" {
		t.Fatalf("non-strings must read as empty: %+v", f)
	}
	if f := Peek([]byte(`not json`)); f.Type != "" || f.Ref != "" {
		t.Fatalf("peeked %+v from garbage", f)
	}
}

// Peek reads untrusted bytes that did not even decode as a frame.
func FuzzPeek(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"send","conv":"room:a","client_msg_id":"c1","from":"admin"}`))
	f.Add([]byte(`{"ref":{"a":1},"conv":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Peek(b)
		if len(p.Ref)+len(p.Conv)+len(p.ClientMsgID)+len(p.Type) > len(b) {
			t.Fatalf("peeked more than the input holds: %+v", p)
		}
	})
}

// Conversation ids come from clients; DirectUsers and DirectConv agree.
func FuzzConvKind(f *testing.F) {
	for _, s := range []string{"room:abc", "lobby:x.y", "dm:1:2", "dm:01:2", "dm:2:1", "dm:18446744073709551615:1", "dm::", "room:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, conv string) {
		kind, ok := ConvKind(conv)
		a, b, dm := DirectUsers(conv)
		if dm != (ok && kind == KindDirect) {
			t.Fatalf("%q: ConvKind %q %v, DirectUsers %v", conv, kind, ok, dm)
		}
		if dm && (DirectConv(a, b) != conv || a >= b) {
			t.Fatalf("%q: users %d, %d do not rebuild it", conv, a, b)
		}
		if ok && len(conv) > 80 {
			t.Fatalf("%q: longer than 80 bytes", conv)
		}
	})
}

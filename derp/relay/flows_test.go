package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/derp"
	"tailscale.com/types/key"
)

// frame builds one DERP frame.
func frame(typ derp.FrameType, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	h := []byte{byte(typ), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], uint32(len(b)))
	return append(h, b...)
}

func TestTapReaderParsesFramesSplitAnywhere(t *testing.T) {
	a, b, c := key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public()
	raw := func(k key.NodePublic) []byte { r := k.Raw32(); return r[:] }
	var stream []byte
	stream = append(stream, frame(derp.FrameClientInfo, raw(a), make([]byte, 40))...)
	stream = append(stream, frame(derp.FrameKeepAlive)...)
	stream = append(stream, frame(derp.FrameSendPacket, raw(b), []byte("hello"))...)
	stream = append(stream, frame(derp.FramePing, make([]byte, 8))...)
	stream = append(stream, frame(derp.FrameSendPacket, raw(b), []byte("x"))...)
	stream = append(stream, frame(derp.FrameForwardPacket, raw(c), raw(a), []byte("fw"))...)
	stream = append(stream, frame(derp.FrameSendPacket, []byte("short"))...) // malformed: ignored
	for _, chunk := range []int{1, 3, 7, 33, len(stream)} {
		now := time.Unix(1000, 0)
		tbl := &flowTable{now: func() time.Time { return now }}
		tr := &tapReader{r: &chunked{b: stream, n: chunk}, table: tbl}
		got, err := io.ReadAll(tr)
		if err != nil || !bytes.Equal(got, stream) {
			t.Fatalf("chunk %d: the stream was changed (%v)", chunk, err)
		}
		flows := tbl.since(now)
		if len(flows) != 2 {
			t.Fatalf("chunk %d: %d flows, want 2: %+v", chunk, len(flows), flows)
		}
		for _, f := range flows {
			switch {
			case f.Src == a && f.Dst == b:
				if f.Packets != 2 || f.Bytes != 6 {
					t.Fatalf("chunk %d: a→b %+v", chunk, f)
				}
			case f.Src == c && f.Dst == a:
				if f.Packets != 1 || f.Bytes != 2 {
					t.Fatalf("chunk %d: c→a %+v", chunk, f)
				}
			default:
				t.Fatalf("chunk %d: unexpected flow %+v", chunk, f)
			}
		}
	}
}

func TestTapReaderNeedsClientInfoBeforePackets(t *testing.T) {
	b := key.NewNode().Public().Raw32()
	tbl := &flowTable{now: time.Now}
	tr := &tapReader{r: bytes.NewReader(frame(derp.FrameSendPacket, b[:], []byte("x"))), table: tbl}
	io.ReadAll(tr)
	if f := tbl.since(time.Time{}); len(f) != 0 {
		t.Fatalf("a packet from an unnamed sender was recorded: %+v", f)
	}
}

func TestFlowTableForgetsStalePairs(t *testing.T) {
	now := time.Unix(1000, 0)
	tbl := &flowTable{now: func() time.Time { return now }}
	a, b := key.NewNode().Public(), key.NewNode().Public()
	tbl.note(a, b, 10)
	now = now.Add(flowTTL + time.Second)
	if f := tbl.since(time.Time{}); len(f) != 0 {
		t.Fatalf("a stale pair is still listed: %+v", f)
	}
}

type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// A real relay and two real DERP clients: the relay names the pair that
// exchanged a packet, and only that pair.
func TestRelayRecordsWhichPairsItCarries(t *testing.T) {
	s, err := Start(Options{Listen: "127.0.0.1:0", StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pa, pb, pc := key.NewNode(), key.NewNode(), key.NewNode()
	ca, cb, cc := s.Client(pa, t.Logf), s.Client(pb, t.Logf), s.Client(pc, t.Logf)
	defer ca.Close()
	defer cb.Close()
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []interface{ Connect(context.Context) error }{ca, cb, cc} {
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	got := make(chan []byte, 1)
	go func() {
		for {
			m, err := cb.Recv()
			if err != nil {
				return
			}
			if p, ok := m.(derp.ReceivedPacket); ok {
				got <- p.Data
				return
			}
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := ca.Send(pb.Public(), []byte("ping")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("b never received a's packet")
			}
			continue
		}
		break
	}
	ka, _ := pa.Public().MarshalText()
	kb, _ := pb.Public().MarshalText()
	kc, _ := pc.Public().MarshalText()
	if !s.RelayedBetween(string(ka), string(kb), start) || !s.RelayedBetween(string(kb), string(ka), start) {
		t.Fatalf("a→b not recorded: %+v", s.Flows(start))
	}
	if s.RelayedBetween(string(ka), string(kc), start) || s.RelayedBetween(string(kb), string(kc), start) {
		t.Fatal("a pair that exchanged nothing is recorded")
	}
	if s.RelayedBetween(string(ka), string(kb), time.Now().Add(time.Second)) {
		t.Fatal("since is ignored")
	}
	// c's handshake is done, but the relay registers a client a moment
	// after it: wait for that, then ask.
	for deadline := time.Now().Add(5 * time.Second); !s.NodeConnected(string(kc)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("NodeConnected: c, connected, is not")
		}
	}
	if s.NodeConnected("nodekey:00") {
		t.Fatal("NodeConnected: a node that never connected is")
	}
	if n := relayedPairs(t, s); n != 1 {
		t.Fatalf("roomnet_derp_relayed_pairs = %v, want 1 (a→b)", n)
	}
}

func relayedPairs(t *testing.T, s *Server) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "roomnet_derp_relayed_pairs" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no roomnet_derp_relayed_pairs")
	return 0
}

// A steady stream to one peer reaches the table at once (the pair is
// seen) and then once a second, not packet by packet: the table's lock is
// off the relay's per-packet path.
func TestTapReaderBatchesAPeersPackets(t *testing.T) {
	a, b := key.NewNode().Public(), key.NewNode().Public()
	ra, rb := a.Raw32(), b.Raw32()
	now := time.Unix(1000, 0)
	tbl := &flowTable{now: func() time.Time { return now }}
	tr := &tapReader{table: tbl}
	tr.scan(frame(derp.FrameClientInfo, ra[:], make([]byte, 40)))
	packets := func() uint64 {
		var n uint64
		for _, f := range tbl.since(time.Time{}) {
			n += f.Packets
		}
		return n
	}
	for range 100 {
		tr.scan(frame(derp.FrameSendPacket, rb[:], []byte("x")))
	}
	if got := packets(); got != 1 {
		t.Fatalf("after 100 packets within a second the table holds %d, want the first alone", got)
	}
	now = now.Add(time.Second)
	tr.scan(frame(derp.FrameSendPacket, rb[:], []byte("x")))
	if got := packets(); got != 101 {
		t.Fatalf("a second later the table holds %d packets, want 101", got)
	}
	if f := tbl.since(now); len(f) != 1 || !f[0].Last.Equal(now) {
		t.Fatalf("the pair's last packet: %+v, want at %v", f, now)
	}
}

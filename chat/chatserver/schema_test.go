package chatserver

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/roomnet/roomnet/chat"
)

// The frames of docs/protocol.schema.json. Every frame the test clients
// of this package send (through rawClient.send and the SDK) and every
// frame they receive is validated against it, so that the schema, the
// doc it describes and the server cannot drift apart.
var frameSchemas struct {
	once           sync.Once
	client, server *jsonschema.Schema
	err            error
}

const schemaPath = "../../docs/protocol.schema.json"

func loadFrameSchemas() (client, server *jsonschema.Schema, err error) {
	fs := &frameSchemas
	fs.once.Do(func() {
		f, err := os.Open(schemaPath)
		if err != nil {
			fs.err = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			fs.err = err
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		if fs.err = c.AddResource("protocol.schema.json", doc); fs.err != nil {
			return
		}
		if _, fs.err = c.Compile("protocol.schema.json"); fs.err != nil {
			return
		}
		if fs.client, fs.err = c.Compile("protocol.schema.json#/$defs/clientFrame"); fs.err != nil {
			return
		}
		fs.server, fs.err = c.Compile("protocol.schema.json#/$defs/serverFrame")
	})
	return fs.client, fs.server, fs.err
}

// frameTap validates a client's frames: of each type and direction the
// first 20 and then every 100th (pages over 64 KiB: the first 2), so
// that a test moving thousands of messages is not slowed down by
// validating each one.
type frameTap struct {
	t    testing.TB
	mu   sync.Mutex
	seen map[string]int
}

func newFrameTap(t testing.TB) *frameTap { return &frameTap{t: t, seen: map[string]int{}} }

func (ft *frameTap) check(fromClient bool, frame []byte) {
	key := string(peekType(frame))
	if fromClient {
		key = "c2s " + key
	}
	ft.mu.Lock()
	n := ft.seen[key]
	ft.seen[key]++
	ft.mu.Unlock()
	if len(frame) > 64<<10 && n >= 2 {
		return
	}
	if n < 20 || n%100 == 0 {
		checkFrame(ft.t, fromClient, frame)
	}
}

// peekType finds a frame's type cheaply (for sampling only).
func peekType(frame []byte) []byte {
	i := bytes.Index(frame, []byte(`"type":"`))
	if i < 0 {
		return nil
	}
	rest := frame[i+8:]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return nil
}

// checkFrame validates one JSON frame sent by a client (fromClient) or a
// server against the schema.
func checkFrame(t testing.TB, fromClient bool, frame []byte) {
	client, server, err := loadFrameSchemas()
	if err != nil {
		t.Errorf("loading %s: %v", schemaPath, err)
		return
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(frame))
	if err != nil {
		t.Errorf("frame is not JSON: %v: %s", err, frame)
		return
	}
	sch, dir := server, "server"
	if fromClient {
		sch, dir = client, "client"
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s frame does not match %s: %s\n%v", dir, schemaPath, frame, err)
	}
}

// The schema is strict enough to notice drift: each of these frames is
// one field away from a valid one.
func TestSchemaRefusesDrift(t *testing.T) {
	for _, tc := range []struct {
		fromClient bool
		frame      string
	}{
		{false, `{"v":1,"type":"joined","conv":"lobby:x"}`},                                                                                                    // seq missing
		{false, `{"v":1,"type":"page","conv":"lobby:x","messages":[]}`},                                                                                        // has_more missing
		{false, `{"v":1,"type":"error","error":{"code":"oops","message":"x"}}`},                                                                                // unknown code
		{false, `{"v":1,"type":"error","error":{"code":"muted","message":"x"}}`},                                                                               // until missing
		{false, `{"v":1,"type":"msg","msg":{"conv":"lobby:x","seq":1,"kind":"text","ts":1,"extra":1}}`},                                                        // unknown field
		{false, `{"v":1,"type":"removed","conv":"room:a","reason":"vanished"}`},                                                                                // unknown reason
		{false, `{"v":1,"type":"hello","hello":{"session":"s","user":"u","user_id":1,"min_interval_ms":1,"max_interval_ms":1,"max_body":1,"send_per_sec":1}}`}, // convs missing
		{true, `{"v":1,"type":"send","conv":"room:a","client_msg_id":"c","body":"x","from":"admin"}`},                                                          // from
		{true, `{"v":1,"type":"ack","conv":"room:a","seq":9223372036854775808}`},                                                                               // seq ≥ 2^63
		{true, `{"v":1,"type":"pull","conv":"room:a","codec":"gzip"}`},                                                                                         // unknown codec
		{true, `{"v":2,"type":"ping"}`},                                                                                                                        // version
		{true, `{"type":"ping"}`},                                                                                                                              // no version
		{true, `{"v":1,"type":"teleport"}`},                                                                                                                    // unknown type
		{true, `{"v":1,"type":"history","conv":"Room:A"}`},                                                                                                     // not a conversation id
	} {
		ft := &recordingTB{TB: t}
		checkFrame(ft, tc.fromClient, []byte(tc.frame))
		if !ft.failed {
			t.Errorf("the schema accepts %s", tc.frame)
		}
	}
	// And the valid neighbours pass.
	for _, frame := range []string{`{"v":1,"type":"joined","conv":"lobby:x","seq":0}`, `{"v":1,"type":"error","ref":"c","conv":"room:a","until":5,"error":{"code":"muted","message":"x"}}`} {
		checkFrame(t, false, []byte(frame))
	}
}

// recordingTB records Errorf instead of failing the test.
type recordingTB struct {
	testing.TB
	failed bool
}

func (r *recordingTB) Errorf(string, ...any) { r.failed = true }

// Every server frame type, driven once through a real server and checked
// against the schema by the test clients' tap (and every client frame
// type sent through rawClient.send).
func TestEveryFrameTypeMatchesTheSchema(t *testing.T) {
	srv := startServer(t, Options{})
	a, b := dialRaw(t, srv.url, "u1", nil), dialRaw(t, srv.url, "u2", nil)
	a.await(t, 0, "hello", func(f chat.Frame) bool { return f.Type == chat.TypeHello })
	a.send(t, chat.Frame{Type: chat.TypePing, Ref: "p", TS: 1, RTT: 3, Interval: 5000})
	a.send(t, chat.Frame{Type: chat.TypeOpenDM, Ref: "o", Username: "u2"})
	a.answer(t, "o")
	a.send(t, chat.Frame{Type: chat.TypeSend, Conv: "dm:1:2", ClientMsgID: "m1", Body: "hi"})
	a.answer(t, "m1")
	b.await(t, 0, "the DM", func(f chat.Frame) bool { return f.Type == chat.TypeMsg && f.Msg.Conv == "dm:1:2" })
	b.send(t, chat.Frame{Type: chat.TypeAck, Conv: "dm:1:2", Seq: 1})
	b.send(t, chat.Frame{Type: chat.TypeRead, Conv: "dm:1:2", Seq: 1})
	a.await(t, 0, "a receipt", func(f chat.Frame) bool { return f.Type == chat.TypeReceipt })
	a.send(t, chat.Frame{Type: chat.TypeSync, Ref: "s", Positions: map[string]uint64{"dm:1:2": 0}})
	a.send(t, chat.Frame{Type: chat.TypeHistory, Ref: "h", Conv: "dm:1:2", Before: 5, Limit: 10})
	a.send(t, chat.Frame{Type: chat.TypePull, Conv: "dm:1:2", Limit: 10, Codec: chat.CodecNameDeflate})
	a.send(t, chat.Frame{Type: chat.TypeJoin, Ref: "j", Conv: "lobby:x"})
	a.send(t, chat.Frame{Type: chat.TypeLeave, Ref: "l", Conv: "lobby:x"})
	a.send(t, chat.Frame{Type: chat.TypeAuth, Ref: "again", Token: "u1"})
	for _, ref := range []string{"p", "s", "h", "pull", "j", "l", "again"} {
		a.answer(t, ref)
	}
	if err := srv.Mute(context.Background(), 1, time.Now().Add(time.Minute), "test"); err != nil {
		t.Fatal(err)
	}
	a.send(t, chat.Frame{Type: chat.TypeSend, Conv: "dm:1:2", ClientMsgID: "m2", Body: "muted?"})
	if f := a.answer(t, "m2"); f.Error == nil || f.Error.Code != chat.ErrMuted || f.Until == 0 {
		t.Fatalf("muted send: %+v", f)
	}
	if err := srv.DeleteMessage(context.Background(), "dm:1:2", 1); err != nil {
		t.Fatal(err)
	}
	a.await(t, 0, "deleted", func(f chat.Frame) bool { return f.Type == chat.TypeDeleted })
	srv.Apply([]MembershipEvent{{Type: "member_kicked", RoomID: "r1", UserID: 2, Username: "u2"}})
	b.await(t, 0, "removed", func(f chat.Frame) bool { return f.Type == chat.TypeRemoved })
	seen := map[string]bool{}
	for _, f := range append(a.snapshot(), b.snapshot()...) {
		seen[f.Type] = true
	}
	for _, typ := range []string{chat.TypeHello, chat.TypeSynced, chat.TypeSent, chat.TypeMsg, chat.TypeReceipt, chat.TypePage,
		chat.TypePong, chat.TypeJoined, chat.TypeRemoved, chat.TypeDeleted, chat.TypeError} {
		if !seen[typ] {
			t.Errorf("no %s frame came", typ)
		}
	}
	// notify is driven by TestStormModeSwitchesAndNothingIsLost and
	// TestSlowConsumerIsBoundedAndCatchesUp, through the same tap.
}

// Package chat is roomnet's chat protocol: the frames a client and a
// server exchange over one WebSocket, their codes, close codes and codec.
// chat/chatserver and chat/chatclient both import it and never each other.
// The protocol is documented with an example of every frame in
// docs/protocol.md and described field by field by the JSON Schema in
// docs/protocol.schema.json, which chat/chatserver's tests validate real
// frames against.
package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Version is the protocol version this package speaks.
const Version = 1

// Frame types, client to server.
const (
	TypeAuth    = "auth"    // token, when not given in the upgrade header
	TypeSync    = "sync"    // per-conversation positions after connecting
	TypeSend    = "send"    // a message with a client_msg_id
	TypeAck     = "ack"     // received everything up to seq
	TypeRead    = "read"    // read everything up to seq
	TypeHistory = "history" // a page of a conversation by seq cursor
	TypePing    = "ping"    // heartbeat with the client's clock and RTT
	TypeJoin    = "join"    // subscribe to a lobby
	TypeLeave   = "leave"   // unsubscribe from a lobby
	TypeOpenDM  = "open_dm" // the direct conversation with a user
	TypePull    = "pull"    // messages after a seq, answered by a page that may be compressed
)

// Frame types, server to client.
const (
	TypeHello   = "hello"   // session established; limits and heartbeat bounds
	TypeSynced  = "synced"  // answer to sync: unread counts and newest messages
	TypeSent    = "sent"    // a send is durable: its seq (C2S ack)
	TypeMsg     = "msg"     // a message in a conversation
	TypeReceipt = "receipt" // a direct message was delivered (S2C receipt)
	TypePage    = "page"    // answer to history and pull
	TypePong    = "pong"    // answer to ping
	TypeJoined  = "joined"  // answer to join / open_dm: a conversation
	TypeRemoved = "removed" // you are no longer in a conversation
	TypeNotify  = "notify"  // newer messages exist up to seq; pull them (storm mode, slow consumers)
	TypeDeleted = "deleted" // a moderator deleted the message at seq: stop showing it
	TypeError   = "error"   // a typed error, with the ref of the frame it answers
)

// Message kinds.
const (
	KindText      = "text"
	KindSystem    = "system"    // membership and room events; critical
	KindTombstone = "tombstone" // a seq that was allocated but never written
	KindDeleted   = "deleted"   // a message a moderator deleted; its body is gone
)

// Hidden reports whether messages of kind take a seq but show nothing.
func Hidden(kind string) bool { return kind == KindTombstone || kind == KindDeleted }

// Error codes in error frames. Clients branch on these.
const (
	ErrBadFrame     = "bad_frame"    // not JSON, unknown type or field shape
	ErrBadVersion   = "bad_version"  // protocol version not supported
	ErrUnauthorized = "unauthorized" // token missing or invalid
	ErrForbidden    = "forbidden"    // not a member of the conversation
	ErrNotFound     = "not_found"    // no such conversation or user
	ErrTooLarge     = "too_large"    // message body over the limit
	ErrRateLimited  = "rate_limited" // sending too fast; retry later
	ErrTooMany      = "too_many"     // too many conversations joined
	ErrInvalid      = "invalid"      // a field out of range
	ErrUnavailable  = "unavailable"  // storage failed; retry
	ErrMuted        = "muted"        // a moderator muted the sender until a time; do not retry before it
	ErrInternal     = "internal"     // a bug; report it
)

// Close codes (RFC 6455 private range). Retry tells a client whether
// reconnecting can help.
const (
	CloseUnauthorized   = 4001 // do not reconnect with the same token
	CloseBadVersion     = 4002 // do not reconnect: upgrade the client
	ClosePolicy         = 4003 // misbehaving client (flooding, bad frames); reconnect after backoff
	CloseHeartbeat      = 4008 // missed heartbeats; reconnect
	CloseSlowConsumer   = 4009 // could not keep up with critical frames; reconnect
	CloseShutdown       = 4010 // server going away; reconnect elsewhere or later
	CloseAuthTimeout    = 4011 // no auth frame in time; reconnect
	CloseSessionRevoked = 4012 // the account was banned, the token revoked or expired; do not reconnect
	CloseTooMany        = 4013 // too many connections for the user or address; reconnect after backoff
)

// Retry reports whether a client should reconnect after close code code.
func Retry(code int) bool {
	switch code {
	case CloseUnauthorized, CloseBadVersion, CloseSessionRevoked:
		return false
	}
	return true
}

// Conversation ids are "room:<room id>", "lobby:<name>" and
// "dm:<user id>:<user id>" (lower id first).
const (
	KindRoom   = "room"
	KindLobby  = "lobby"
	KindDirect = "dm"
)

// ConvKind returns the kind of a conversation id and whether it is well formed.
func ConvKind(conv string) (string, bool) {
	kind, rest, ok := strings.Cut(conv, ":")
	if !ok || rest == "" || len(conv) > 80 {
		return "", false
	}
	switch kind {
	case KindRoom, KindLobby:
		for _, r := range rest {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return "", false
			}
		}
		return kind, true
	case KindDirect:
		if _, _, ok := DirectUsers(conv); !ok {
			return "", false
		}
		return kind, true
	}
	return "", false
}

// DirectUsers returns the two user ids of a direct conversation id
// ("dm:<lower>:<higher>", canonical decimal) and whether it is one.
func DirectUsers(conv string) (lower, higher uint64, ok bool) {
	rest, ok := strings.CutPrefix(conv, KindDirect+":")
	if !ok || len(conv) > 80 {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || strconv.FormatUint(x, 10) != a || strconv.FormatUint(y, 10) != b || x >= y {
		return 0, 0, false
	}
	return x, y, true
}

// DirectConv returns the direct conversation id of two users.
func DirectConv(a, b uint64) string {
	if a > b {
		a, b = b, a
	}
	return fmt.Sprintf("%s:%d:%d", KindDirect, a, b)
}

// RoomConv returns the conversation id of a room.
func RoomConv(roomID string) string { return KindRoom + ":" + roomID }

// MaxSeq is the highest seq a conversation can hold (2^63−1): stores
// keep seqs in signed 64-bit columns. A frame naming a larger seq is
// refused with ErrInvalid.
const MaxSeq = math.MaxInt64

// Frame is every frame, both directions: a type, the protocol version and
// the fields that type uses. Unused fields are omitted on the wire.
type Frame struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	// Ref correlates an answer (sent, page, error, pong, joined) with the
	// frame it answers: the client_msg_id of a send, or a request id.
	Ref string `json:"ref,omitempty"`

	Token       string            `json:"token,omitempty"`
	Conv        string            `json:"conv,omitempty"`
	ClientMsgID string            `json:"client_msg_id,omitempty"`
	Body        string            `json:"body,omitempty"`
	Seq         uint64            `json:"seq,omitempty"`
	TS          int64             `json:"ts,omitempty"` // unix ms
	Positions   map[string]uint64 `json:"positions,omitempty"`
	Before      uint64            `json:"before,omitempty"`
	After       uint64            `json:"after,omitempty"`
	// HasAfter says the frame carries an after field even when it is 0:
	// a history frame with after pages forwards, from the first message
	// when after is 0; one without pages backwards from before.
	HasAfter bool   `json:"-"`
	Limit    int    `json:"limit,omitempty"`
	Username string `json:"username,omitempty"`
	Codec    string `json:"codec,omitempty"` // pull: "zstd" or "deflate"; empty: plain text

	// ping / pong
	RTT      int   `json:"rtt_ms,omitempty"`      // client's smoothed RTT
	Interval int   `json:"interval_ms,omitempty"` // client's heartbeat interval
	ServerTS int64 `json:"server_ts,omitempty"`

	Msg      *Message     `json:"msg,omitempty"`
	Messages []Message    `json:"messages,omitempty"`
	Convs    []ConvState  `json:"convs,omitempty"`
	HasMore  bool         `json:"has_more,omitempty"`
	Hello    *Hello       `json:"hello,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	By       string       `json:"by,omitempty"`    // receipt: who received
	Until    int64        `json:"until,omitempty"` // muted: unix ms the mute ends
}

// Message is a stored message as clients see it.
type Message struct {
	Conv        string `json:"conv"`
	Seq         uint64 `json:"seq"`
	Kind        string `json:"kind"`
	From        string `json:"from,omitempty"`
	ClientMsgID string `json:"client_msg_id,omitempty"`
	Body        string `json:"body,omitempty"`
	TS          int64  `json:"ts"`
	Critical    bool   `json:"critical,omitempty"`
}

// ConvState is a conversation's position in a synced frame.
type ConvState struct {
	Conv     string    `json:"conv"`
	MaxSeq   uint64    `json:"max_seq"`
	ReadSeq  uint64    `json:"read_seq"`
	Unread   uint64    `json:"unread"`
	Messages []Message `json:"messages,omitempty"` // newest, oldest first
}

// Hello opens a session.
type Hello struct {
	Session       string `json:"session"`
	User          string `json:"user"`
	UserID        uint64 `json:"user_id"`
	MinIntervalMS int    `json:"min_interval_ms"`
	MaxIntervalMS int    `json:"max_interval_ms"`
	MaxBody       int    `json:"max_body"`
	SendPerSec    int    `json:"send_per_sec"`
	// SendBurst is how many sends the user may make at once before
	// SendPerSec paces them.
	SendBurst int `json:"send_burst"`
	// FramesPerSec and FramesBurst are this connection's frame budget,
	// every client frame counted: a client that keeps within them is
	// never refused a frame for its rate nor closed for flooding.
	FramesPerSec float64 `json:"frames_per_sec"`
	FramesBurst  int     `json:"frames_burst"`
	// Convs are the user's conversations now with their newest seq.
	Convs []ConvState `json:"convs"`
}

// ErrorDetail is a typed error.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfterMS, on rate_limited and unavailable, is how long the
	// client should wait before sending again; zero or absent: its own
	// backoff.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// MaxFrameBytes bounds a client's frame on the wire.
const MaxFrameBytes = 64 << 10

// ErrDecode wraps every decoding failure.
var ErrDecode = errors.New("chat: bad frame")

// Decode parses one frame, refusing unknown fields, trailing data, frames
// over MaxFrameBytes and frames without a type.
func Decode(b []byte) (Frame, error) { return decode(b, MaxFrameBytes) }

// DecodeServer parses a frame from the server, whose pages may be larger
// than a client's frames: up to MaxBatchBytes.
func DecodeServer(b []byte) (Frame, error) { return decode(b, MaxBatchBytes) }

func decode(b []byte, limit int) (Frame, error) {
	var f Frame
	if len(b) > limit {
		return f, fmt.Errorf("%w: %d bytes, limit %d", ErrDecode, len(b), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if dec.More() {
		return Frame{}, fmt.Errorf("%w: trailing data", ErrDecode)
	}
	if f.Type == "" {
		return Frame{}, fmt.Errorf("%w: no type", ErrDecode)
	}
	if f.After != 0 {
		f.HasAfter = true
	} else if f.Type == TypeHistory {
		// Only here does an after of 0 differ from none.
		var probe struct {
			After *json.RawMessage `json:"after"`
		}
		if json.Unmarshal(b, &probe) == nil && probe.After != nil {
			f.HasAfter = true
		}
	}
	return f, nil
}

// Peek reads what an error answering a frame that did not decode can
// name: its type, ref, conversation and client_msg_id, when those are
// readable whatever else is wrong with it. Everything else is zero.
func Peek(b []byte) Frame {
	var p struct {
		Type        any `json:"type"`
		Ref         any `json:"ref"`
		Conv        any `json:"conv"`
		ClientMsgID any `json:"client_msg_id"`
	}
	if len(b) > MaxFrameBytes || json.Unmarshal(b, &p) != nil {
		return Frame{}
	}
	str := func(v any) string {
		s, _ := v.(string)
		return s
	}
	return Frame{Type: str(p.Type), Ref: str(p.Ref), Conv: str(p.Conv), ClientMsgID: str(p.ClientMsgID)}
}

// Encode serializes a frame, stamping the protocol version.
func Encode(f Frame) ([]byte, error) {
	f.V = Version
	// Not json.Marshal(f): that would compact MarshalJSON's output
	// again, a second pass over every page.
	return f.MarshalJSON()
}

// frameJSON is Frame without its methods, for MarshalJSON.
type frameJSON Frame

// MarshalJSON writes the fields a frame type always carries even when
// they are zero: joined's seq, page's messages and has_more, synced's
// convs, and after in a forward history frame.
func (f Frame) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(frameJSON(f))
	if err != nil {
		return nil, err
	}
	var extra []string
	switch f.Type {
	case TypeJoined:
		if f.Seq == 0 {
			extra = append(extra, `"seq":0`)
		}
	case TypePage:
		if len(f.Messages) == 0 {
			extra = append(extra, `"messages":[]`)
		}
		if !f.HasMore {
			extra = append(extra, `"has_more":false`)
		}
	case TypeSynced:
		if len(f.Convs) == 0 {
			extra = append(extra, `"convs":[]`)
		}
	case TypeHistory, TypePull:
		if f.HasAfter && f.After == 0 {
			extra = append(extra, `"after":0`)
		}
	}
	if len(extra) == 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b)+32)
	out = append(out, b[:len(b)-1]...)
	for _, e := range extra {
		out = append(out, ',')
		out = append(out, e...)
	}
	return append(out, '}'), nil
}

// ValidText reports whether every string in a JSON frame is Unicode text:
// the bytes are UTF-8 and no \u escape is a lone surrogate. Go's decoder
// silently turns both into U+FFFD; a server refuses them instead.
func ValidText(frame []byte) bool {
	if !utf8.Valid(frame) {
		return false
	}
	for i := 0; i < len(frame); i++ {
		if frame[i] != '\\' {
			continue
		}
		if i+1 >= len(frame) || frame[i+1] != 'u' {
			i++ // an escaped character, maybe a backslash
			continue
		}
		r, ok := hex4(frame, i+2)
		switch {
		case !ok:
			return false
		case r >= 0xDC00 && r < 0xE000:
			return false // a low surrogate without a high one
		case r >= 0xD800 && r < 0xDC00:
			if i+12 > len(frame) || frame[i+6] != '\\' || frame[i+7] != 'u' {
				return false
			}
			lo, ok := hex4(frame, i+8)
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return false
			}
			i += 11
		default:
			i += 5
		}
	}
	return true
}

// hex4 parses the four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

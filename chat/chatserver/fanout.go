package chatserver

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomnet/roomnet/chat"
)

// Fan-out: what the bus delivers reaches this node's sessions through
// the hub, encoded and prepared once for all of them.

// onBus delivers a published frame to this node's connections. It is
// encoded once and prepared once for all receivers.
func (s *Server) onBus(topic string, payload []byte) {
	if topic == topicCtl {
		s.applyCtl(payload)
		return
	}
	if topic == topicMod {
		var n muteNews
		if err := json.Unmarshal(payload, &n); err == nil {
			s.mutes.apply(n)
		}
		return
	}
	conv, ok := strings.CutPrefix(topic, topicConv)
	if !ok {
		return
	}
	f, err := chat.Decode(payload)
	if err != nil {
		return
	}
	if f.Type == chat.TypeDeleted {
		s.pages.forget(conv) // cached pages still hold the body
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, payload)
	if err != nil {
		return
	}
	out := outFrame{prepared: pm}
	bulk := false
	if f.Msg != nil {
		if o, ok := s.seq.(seqObserver); ok {
			o.Observe(conv, f.Msg.Seq) // another node's write lifts this node's floor
		}
		s.pages.published(conv, f.Msg.Seq)
		if kind, _ := chat.ConvKind(conv); kind == chat.KindLobby && !f.Msg.Critical {
			if s.storms.observe(conv, f.Msg.Seq, time.Now()) {
				return // the next notify announces it
			}
		}
		bulk = !f.Msg.Critical
		if f.Msg.Critical {
			s.storms.pushedCritical(conv, f.Msg.Seq)
		}
		out.conv, out.seq = conv, f.Msg.Seq
	}
	targets := s.hub.targets(conv)
	s.metrics.fanout.Add(float64(len(targets)))
	for _, c := range targets {
		if bulk {
			c.sendBulk(out)
		} else {
			c.sendPriority(out)
		}
	}
}

// notifyAll sends one notify, encoded once, to the subscribers of conv in
// notify group group (-1: all of them).
func (s *Server) notifyAll(conv string, seq uint64, group int) {
	b, err := chat.Encode(chat.Frame{Type: chat.TypeNotify, Conv: conv, Seq: seq})
	if err != nil {
		return
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		return
	}
	n := 0
	for _, c := range s.hub.targets(conv) {
		if group < 0 || int(c.group) == group {
			c.sendNotify(outFrame{prepared: pm, conv: conv, seq: seq, notify: true})
			n++
		}
	}
	s.metrics.notifies.Add(float64(n))
}

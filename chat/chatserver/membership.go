package chatserver

import (
	"context"
	"encoding/json"
	"time"

	"github.com/roomnet/roomnet/chat"
)

// Membership: which rooms a session may use. A session's rooms come from
// the Directory when it starts (loaded) and change with the membership
// events the control plane applies (Apply) on this node at once and on
// the others through the bus (nodes.go). The hub's lock orders the two:
// an event that arrives while a session's rooms are loading wins over the
// load.

// Apply applies room membership events: members gain or lose a room's
// conversation at once, on every node, and the room gets an ordered
// system message for each event. The control plane calls it before it
// answers the request that caused the events.
func (s *Server) Apply(events []MembershipEvent) {
	for _, ev := range events {
		b, err := json.Marshal(ctlNews{Node: s.node, MembershipEvent: ev})
		if err != nil {
			continue
		}
		text := systemText(ev)
		conv := chat.RoomConv(ev.RoomID)
		if ev.Type == "room_closed" {
			// The members are told before they are removed, or
			// nobody would be left to receive it.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := s.appendSystem(ctx, conv, text); err != nil {
				s.log.Warn("storing a room's closing message", "conv", conv, "err", err)
			}
			cancel()
			text = ""
		}
		// This node at once, whatever the bus does; the others when the
		// bus delivers it (nodes.go).
		s.applyLocal(ev)
		s.ctl.publish(b)
		if text != "" {
			s.append(context.Background(), StoredMessage{
				Conv: conv, Kind: chat.KindSystem, ClientMsgID: "sys-" + newSession() + newSession(),
				Body: text, Critical: true,
			}, false, func(StoredMessage, error) {})
		}
	}
}

func systemText(ev MembershipEvent) string {
	switch ev.Type {
	case "member_joined":
		return ev.Username + " joined"
	case "member_left":
		return ev.Username + " left"
	case "member_kicked":
		return ev.Username + " was kicked"
	case "host_changed":
		return ev.Username + " is now the host"
	case "room_closed":
		return "the room was closed"
	case "room_moved":
		return "the room moved to another server; members reconnect by themselves"
	}
	return ""
}

// applyLocal changes this node's sessions for one membership event.
func (s *Server) applyLocal(ev MembershipEvent) {
	if s.hub.apply(ev) {
		s.pages.forget(chat.RoomConv(ev.RoomID))
	}
}

// apply changes the sessions for one membership event and reports
// whether it closed the room.
func (h *hub) apply(ev MembershipEvent) (closed bool) {
	conv := chat.RoomConv(ev.RoomID)
	h.mu.Lock()
	defer h.mu.Unlock()
	remove := func(c *conn, reason string) {
		if c.loading {
			c.lost[conv] = true
		}
		if c.revoke(conv) {
			h.unsubscribeLocked(c, conv)
			c.sendFrame(chat.Frame{Type: chat.TypeRemoved, Conv: conv, Reason: reason})
		}
	}
	switch ev.Type {
	case EventUserBanned:
		for c := range h.byUser[ev.UserID] {
			go c.shutdown(chat.CloseSessionRevoked, "account banned")
		}
	case EventSessionEnded:
		if ev.Session == "" {
			return false
		}
		within := h.conns
		if ev.UserID != 0 {
			within = h.byUser[ev.UserID]
		}
		for c := range within {
			if c.user.Session == ev.Session {
				go c.shutdown(chat.CloseSessionRevoked, "signed out")
			}
		}
	case "member_joined":
		for c := range h.byUser[ev.UserID] {
			if c.loading {
				delete(c.lost, conv)
			}
			c.allow(conv)
			h.subscribeLocked(c, conv)
		}
	case "member_left":
		for c := range h.byUser[ev.UserID] {
			remove(c, "left")
		}
	case "member_kicked":
		for c := range h.byUser[ev.UserID] {
			remove(c, "kicked")
		}
	case "room_closed":
		for c := range h.byConv[conv] {
			remove(c, "closed")
		}
		for c := range h.loading {
			c.lost[conv] = true
		}
		return true
	}
	return false
}

// loaded gives a registered session its rooms, less those it lost while
// they were being loaded.
func (h *hub) loaded(c *conn, rooms []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rooms {
		conv := chat.RoomConv(r)
		if !c.lost[conv] {
			c.allow(conv)
			h.subscribeLocked(c, conv)
		}
	}
	c.loading, c.lost = false, nil
	delete(h.loading, c)
}

// recheck gives sessions cs (of one user) exactly the rooms in now
// (conversation names), skipping sessions still loading theirs: a room
// they lost is removed with reason left, a room they gained is added. It
// returns how many it removed and added.
func (h *hub) recheck(cs []*conn, now map[string]bool) (removed, added int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cs {
		if c.loading {
			continue
		}
		for _, conv := range c.convList() {
			if kind, _ := chat.ConvKind(conv); kind == chat.KindRoom && !now[conv] && c.revoke(conv) {
				h.unsubscribeLocked(c, conv)
				c.sendFrame(chat.Frame{Type: chat.TypeRemoved, Conv: conv, Reason: "left"})
				removed++
			}
		}
		for conv := range now {
			if !c.can(conv) {
				c.allow(conv)
				h.subscribeLocked(c, conv)
				added++
			}
		}
	}
	return removed, added
}

package chatserver

import (
	"context"
	"testing"

	"github.com/roomnet/roomnet/chat"
)

// A sender's text messages are found in every conversation or in one,
// and no longer once deleted; one message is read back with its body.
func TestStoreFindsASendersTextMessages(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			msgs := []StoredMessage{msgAt("lobby:main", 1, 7, "a"), msgAt("lobby:main", 2, 8, "b"), msgAt("lobby:main", 3, 7, "c")}
			if err := s.Append(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, []StoredMessage{msgAt("room:x", 1, 7, "d")}); err != nil {
				t.Fatal(err)
			}
			all, err := s.TextMessagesBy(ctx, 7, "", 10)
			if err != nil || len(all) != 3 {
				t.Fatalf("all of 7: %+v %v", all, err)
			}
			one, err := s.TextMessagesBy(ctx, 7, "room:x", 10)
			if err != nil || len(one) != 1 || one[0].Seq != 1 {
				t.Fatalf("7 in room:x: %+v %v", one, err)
			}
			if few, _ := s.TextMessagesBy(ctx, 7, "", 2); len(few) != 2 {
				t.Fatalf("limit: %+v", few)
			}
			if none, _ := s.TextMessagesBy(ctx, 9, "", 10); len(none) != 0 {
				t.Fatalf("a sender without messages: %+v", none)
			}
			if ok, err := s.MarkDeleted(ctx, "lobby:main", 3); !ok || err != nil {
				t.Fatalf("delete: %v %v", ok, err)
			}
			if left, _ := s.TextMessagesBy(ctx, 7, "lobby:main", 10); len(left) != 1 || left[0].Seq != 1 {
				t.Fatalf("deleted messages are not text: %+v", left)
			}
			m, ok, err := s.Message(ctx, "lobby:main", 2)
			if err != nil || !ok || m.Body != "bb" || m.SenderID != 8 {
				t.Fatalf("message: %+v %v %v", m, ok, err)
			}
			if m, ok, _ := s.Message(ctx, "lobby:main", 3); !ok || m.Kind != chat.KindDeleted || m.Body != "" {
				t.Fatalf("deleted message: %+v %v", m, ok)
			}
			if _, ok, err := s.Message(ctx, "lobby:main", 99); ok || err != nil {
				t.Fatalf("no message: %v %v", ok, err)
			}
		})
	}
}

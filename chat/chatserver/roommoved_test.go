package chatserver

import "testing"

// A room that moved to another Headscale shard gets a system message;
// nobody loses the room's conversation for it.
func TestRoomMovedIsSaidInTheRoom(t *testing.T) {
	if got := systemText(MembershipEvent{Type: "room_moved", RoomID: "r1"}); got != "the room moved to another server; members reconnect by themselves" {
		t.Fatalf("system text %q", got)
	}
}

package cli

import (
	"testing"

	"github.com/roomnet/roomnet/roomnet"
)

// A matrix cell says which way a pair goes: direct, a guess of direct,
// a roommate's peer relay, or DERP.
func TestCellTextNamesThePath(t *testing.T) {
	loss := 0.0
	for _, tc := range []struct {
		cell     RoomCell
		measured bool
		want     string
	}{
		{RoomCell{Direct: true, RTTMS: 3.2, LossPct: &loss}, true, "direct 3.2 ms 0% loss"},
		{RoomCell{Direct: true, Inferred: true}, false, "direct?"},
		{RoomCell{PeerRelay: true, Path: "203.0.113.7:40000:vni:7", RTTMS: 4}, false, "peer relay 4.0 ms"},
		{RoomCell{Path: "roomnet", RTTMS: 24.1}, false, "relayed 24.1 ms"},
		{RoomCell{Error: "timeout"}, true, "no answer"},
	} {
		if got := cellText(tc.cell, tc.measured); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.cell, got, tc.want)
		}
	}
}

// Another member's reported link becomes a cell that keeps the peer
// relay apart from DERP, and this machine's cells become links the same
// way (the report the admin panel shows).
func TestReportedLinksAndCellsKeepThePeerRelay(t *testing.T) {
	members := []roomnet.Member{
		{Username: "me"},
		{Username: "rita", Nodes: []roomnet.Node{{IPs: []string{"100.64.0.1"}}},
			Links: []roomnet.Link{{Peer: "me", IP: "100.64.0.2", PeerRelay: true, Addr: "203.0.113.7:40000:vni:7", RTTMS: 4}}},
	}
	rows := reportedRows("me", members)
	if len(rows) != 1 || len(rows[0].Cells) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	if c := rows[0].Cells[0]; !c.PeerRelay || c.Direct || c.Path != "203.0.113.7:40000:vni:7" {
		t.Fatalf("rita's reported cell %+v, want the peer relay and its endpoint", c)
	}
	links := cellLinks([]RoomCell{{To: "rita", PeerRelay: true, Path: "203.0.113.7:40000:vni:7", RTTMS: 4}}, members)
	want := roomnet.Link{Peer: "rita", IP: "100.64.0.1", PeerRelay: true, Addr: "203.0.113.7:40000:vni:7", RTTMS: 4}
	if len(links) != 1 || links[0] != want {
		t.Fatalf("links %+v, want %+v", links, want)
	}
}

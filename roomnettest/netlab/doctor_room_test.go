package netlab_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnet/cli"
	"github.com/roomnet/roomnet/roomnettest/netlab"
)

// roomnet doctor --room behind real NATs: the guest's row says direct
// where hole punching works (easy ↔ easy) and relayed where it cannot
// (symmetric ↔ symmetric), and the pings get through either way.
func TestDoctorRoomBehindNATs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs roomnetd and the CLI in namespaces")
	}
	for _, tc := range []struct {
		a, b   netlab.NAT
		direct bool
	}{
		{netlab.Easy, netlab.Easy, true},
		{netlab.Symmetric, netlab.Symmetric, false},
	} {
		t.Run(fmt.Sprintf("%s-%s", tc.a, tc.b), func(t *testing.T) {
			lab := netlab.New(t)
			srv := startServer(t, lab.Public("srv"))
			host := newPlayer(t, lab.Home(tc.a).PC("alice"), srv, "alice")
			guest := newPlayer(t, lab.Home(tc.b).PC("bob"), srv, "bob")
			hs := host.start("host", "--name", "lab room")
			room := hs.await(t, "room", 60*time.Second)["room"].(map[string]any)
			hs.await(t, "node_up", 60*time.Second)
			gs := guest.start("join", room["invite_code"].(string))
			gs.await(t, "host_reached", 60*time.Second)

			var cell cli.RoomCell
			var last string
			for end := time.Now().Add(30 * time.Second); ; {
				code, out := guest.run("", "doctor", "--room", "--count", "3", "--json")
				last = fmt.Sprintf("exit %d: %s", code, out)
				var r struct {
					OK   bool          `json:"ok"`
					Rows []cli.RoomRow `json:"rows"`
				}
				if code == 0 && json.Unmarshal([]byte(strings.TrimSpace(out)), &r) == nil && r.OK &&
					len(r.Rows) > 0 && r.Rows[0].From == "bob" && len(r.Rows[0].Cells) == 1 {
					cell = r.Rows[0].Cells[0]
					if cell.Direct == tc.direct || time.Now().After(end) {
						break
					}
				} else if time.Now().After(end) {
					t.Fatalf("doctor --room never answered: %s", last)
				}
			}
			t.Logf("doctor --room %s ↔ %s: %s", tc.a, tc.b, last)
			if cell.To != "alice" || cell.Sent != 3 || cell.LossPct == nil || *cell.LossPct != 0 || cell.RTTMS <= 0 {
				t.Fatalf("%s ↔ %s: %+v", tc.a, tc.b, cell)
			}
			if cell.Direct != tc.direct {
				t.Fatalf("%s ↔ %s: direct %v (path %s), want %v", tc.a, tc.b, cell.Direct, cell.Path, tc.direct)
			}
		})
	}
}

package cli_test

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet/cli"
	"github.com/roomnet/roomnet/roomnettest"
)

// doctor --room pings every member through the running session, prints
// the matrix with the others' latest reports (an admin sees them), and
// exits 18 when a member does not answer.
func TestDoctorRoomWithTheRealBinary(t *testing.T) {
	h := roomnettest.New(t)
	h.User("alice")
	h.User("carol")
	alice, carol, admin := newUser(t), newUser(t), newUser(t)
	alice.login(t, h, "alice")
	carol.login(t, h, "carol")
	code, _, errs := admin.run(roomnettest.AdminPassword+"\n", "login", "--server", h.URL, "--username", h.Config.Auth.AdminUsername, "--password-stdin")
	require.Equal(t, 0, code, errs)

	code, _, errs = carol.run("", "doctor", "--room")
	require.Equal(t, cli.ExitUsage, code, "not in a room: %s", errs)

	host := alice.start("host", "--name", "doctor room", "--game", "fake", "--max", "3")
	invite := host.await(t, "invite code:")
	host.await(t, "node up:")
	p1 := carol.start("join", invite, "--bind", "127.0.0.2")
	p1.await(t, "host reached at")
	p2 := admin.start("join", invite, "--bind", "127.0.0.3")
	p2.await(t, "host reached at")

	type out struct {
		OK    bool          `json:"ok"`
		Room  string        `json:"room"`
		Count int           `json:"count"`
		Rows  []cli.RoomRow `json:"rows"`
	}
	var res out
	last := ""
	defer func() {
		if t.Failed() {
			t.Logf("last matrix: %s", last)
		}
	}()
	require.Eventually(t, func() bool {
		code, stdout, errs := admin.run("", "doctor", "--room", "--count", "2", "--json")
		if code != 0 {
			t.Logf("doctor --room: %d %s %s", code, stdout, errs)
			return false
		}
		res = out{}
		require.NoError(t, json.Unmarshal([]byte(stdout), &res))
		// The sessions report every 5 s: wait for alice's and carol's
		// rows, each with both other members (a report made before the
		// admin's node was up has one cell).
		full := 0
		for _, r := range res.Rows {
			if (r.From == "alice" || r.From == "carol") && r.Source == "client" && len(r.Cells) == 2 && r.Cells[0].LossPct == nil {
				full++
			}
		}
		last = stdout
		return full == 2
	}, 60*time.Second, time.Second, "the admin's matrix with alice's and carol's full reported rows")
	require.True(t, res.OK)
	require.Equal(t, 2, res.Count)
	mine := res.Rows[0]
	require.Equal(t, "ping", mine.Source)
	require.Len(t, mine.Cells, 2)
	for _, c := range mine.Cells {
		require.Contains(t, []string{"alice", "carol"}, c.To)
		require.Equal(t, 2, c.Sent)
		require.NotNil(t, c.LossPct)
		require.Zero(t, *c.LossPct)
		require.Positive(t, c.RTTMS)
		require.False(t, c.Direct, "loopback with direct UDP off: relayed")
		require.Equal(t, "roomnet", c.Path)
	}
	// The text matrix names every member and marks this machine's row.
	code, stdout, errs := admin.run("", "doctor", "--room", "--count", "1")
	require.Equal(t, 0, code, errs)
	t.Logf("doctor --room:\n%s", stdout)
	require.Contains(t, stdout, "(you)")
	require.Contains(t, stdout, "relayed")
	require.Contains(t, stdout, "0% loss")
	for _, n := range []string{"alice", "carol"} {
		require.Contains(t, stdout, n)
	}

	// A player (not an admin) sees the others' rows too, without their
	// endpoints (here all relayed: the path is the region).
	code, stdout, errs = carol.run("", "doctor", "--room", "--count", "1", "--json")
	require.Equal(t, 0, code, errs)
	res = out{}
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	require.Equal(t, "carol", res.Rows[0].From)
	require.Len(t, res.Rows, 3)
	for _, r := range res.Rows[1:] {
		require.Equal(t, "client", r.Source, "carol sees %s's report", r.From)
		require.Len(t, r.Cells, 2)
		for _, c := range r.Cells {
			require.Equal(t, "roomnet", c.Path)
		}
	}

	// Carol's machine dies without leaving: her node stays a member's
	// but answers nothing, and the admin's doctor says so with exit 18.
	p1.cmd.Process.Signal(syscall.SIGKILL)
	<-p1.done
	code, stdout, _ = admin.run("", "doctor", "--room", "--count", "1", "--json")
	require.Equal(t, cli.ExitDoctor, code, stdout)
	res = out{}
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	require.False(t, res.OK)
	for _, c := range res.Rows[0].Cells {
		require.NotNil(t, c.LossPct, "%+v", c)
		if c.To == "carol" {
			require.Equal(t, float64(100), *c.LossPct)
		} else {
			require.Zero(t, *c.LossPct, "%+v", c)
		}
	}
	require.True(t, strings.Contains(stdout, `"to":"carol"`))

	// No session on this machine: an error, not a matrix.
	p2.exits(t, syscall.SIGTERM, 0, "the admin's join on SIGTERM")
	code, _, _ = admin.run("", "doctor", "--room")
	require.NotEqual(t, 0, code)
}

package roomnetd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnettest"
)

// The official Tailscale client joins a room with the key the API hands
// out (`tailscale up --login-server --authkey`), reaches the room's host,
// and is cut off when kicked.
func TestOfficialTailscaleClientJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tailscaled")
	}
	o := startOfficialRoom(t, "official client")
	ts, alice, room, host := o.ts, o.alice, o.room, o.host

	run := ts.Run

	type status struct {
		BackendState string
		Self         struct{ TailscaleIPs []string }
		Peer         map[string]struct {
			TailscaleIPs []string
			Online       bool
		}
	}
	readStatus := func() (status, error) {
		var st status
		out, err := run(10*time.Second, "status", "--json")
		if err != nil {
			return st, fmt.Errorf("%v: %s", err, out)
		}
		return st, json.Unmarshal([]byte(out), &st)
	}
	eventually(t, 20*time.Second, "host in the official client's netmap", func() error {
		st, err := readStatus()
		if err != nil {
			return err
		}
		for _, p := range st.Peer {
			for _, ip := range p.TailscaleIPs {
				if ip == host.IP().String() {
					return nil
				}
			}
		}
		return fmt.Errorf("peers: %+v", st.Peer)
	})
	eventually(t, 60*time.Second, "official client reaches the host over TCP", func() error { return o.nc("hello official") })

	require.NoError(t, alice.Kick(roomnettest.Context(t, 10*time.Second), room.ID, "bob"))
	eventually(t, 10*time.Second, "kicked official client stops", func() error {
		st, err := readStatus()
		if err != nil {
			return err
		}
		if st.BackendState == "Running" {
			return fmt.Errorf("still %s", st.BackendState)
		}
		return nil
	})
}

// officialRoom is a room whose host is a tsnet node answering echo on
// port 7777, and whose player bob is in it with the official Tailscale
// client (tailscaled, `tailscale up` with the key the API handed out).
type officialRoom struct {
	ts         roomnettest.Tailscaled
	h          *roomnettest.Harness
	alice, bob *roomnet.Client
	room       roomnet.CreateRoomResponse
	host       *node.Node
}

func startOfficialRoom(t *testing.T, name string) officialRoom {
	t.Helper()
	o := officialRoom{ts: roomnettest.StartTailscaled(t), h: roomnettest.New(t)}
	o.alice, o.bob = o.h.User("alice"), o.h.User("bob")
	o.room = createRoom(t, o.alice, name, 4)
	o.host = roomnettest.Node(t, o.room.Join, "host")
	serveEcho(t, o.host, 7777)
	grant := join(t, o.bob, o.room.ID)
	out, err := o.ts.Run(60*time.Second, "up", "--login-server", grant.LoginServer, "--authkey", grant.AuthKey,
		"--hostname", "bob-pc", "--accept-dns=false", "--accept-routes=false")
	require.NoError(t, err, out)
	return o
}

// nc sends line to the host's echo through the official client (tailscale
// nc) and checks the answer. tailscale nc exits at the end of its input,
// so the input stays open until the echo has come back.
func (o officialRoom) nc(line string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.ts.CLI, "--socket="+o.ts.Socket, "nc", o.host.IP().String(), "7777")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }()
	if _, err := io.WriteString(in, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(out).ReadString('\n')
	if got != "echo:"+line+"\n" {
		return fmt.Errorf("nc read %q: %v", got, err)
	}
	return nil
}

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

	"github.com/roomnet/roomnet/roomnettest"
)

// The official Tailscale client joins a room with the key the API hands
// out (`tailscale up --login-server --authkey`), reaches the room's host,
// and is cut off when kicked.
func TestOfficialTailscaleClientJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tailscaled")
	}
	ts := roomnettest.StartTailscaled(t)
	h := roomnettest.New(t)
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "official client", 4)
	host := roomnettest.Node(t, room.Join, "host")
	serveEcho(t, host, 7777)
	grant := join(t, bob, room.ID)

	run := ts.Run
	out, err := run(60*time.Second, "up", "--login-server", grant.LoginServer, "--authkey", grant.AuthKey,
		"--hostname", "bob-pc", "--accept-dns=false", "--accept-routes=false")
	require.NoError(t, err, out)

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
	// tailscale nc exits at the end of its input, so the input stays open
	// until the echo has come back.
	nc := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ts.CLI, "--socket="+ts.Socket, "nc", host.IP().String(), "7777")
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
		if _, err := io.WriteString(in, "hello official\n"); err != nil {
			return err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if line != "echo:hello official\n" {
			return fmt.Errorf("nc read %q: %v", line, err)
		}
		return nil
	}
	eventually(t, 60*time.Second, "official client reaches the host over TCP", nc)

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

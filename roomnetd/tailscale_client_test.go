package roomnetd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnettest"
)

// buildTailscale builds the official tailscaled and tailscale from the
// pinned tailscale.com module (go.mod's tool directive).
func buildTailscale(t *testing.T) (daemon, cli string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "tailscale.com/cmd/tailscaled", "tailscale.com/cmd/tailscale")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building tailscale: %v\n%s", err, out)
	}
	return filepath.Join(dir, "tailscaled"), filepath.Join(dir, "tailscale")
}

// The official Tailscale client joins a room with the key the API hands
// out (`tailscale up --login-server --authkey`), reaches the room's host,
// and is cut off when kicked.
func TestOfficialTailscaleClientJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tailscaled")
	}
	daemon, cli := buildTailscale(t)
	h := roomnettest.New(t)
	alice, bob := h.User("alice"), h.User("bob")
	room := createRoom(t, alice, "official client", 4)
	host := roomnettest.Node(t, room.Join, "host")
	serveEcho(t, host, 7777)
	grant := join(t, bob, room.ID)

	dir := t.TempDir()
	sock := filepath.Join(dir, "tailscaled.sock")
	d := exec.Command(daemon, "--tun=userspace-networking", "--statedir="+dir, "--socket="+sock, "--port=0", "--no-logs-no-support")
	d.Env = append(os.Environ(),
		"TS_DEBUG_NEVER_DIRECT_UDP=true", "TS_DISABLE_PORTMAPPER=1", "TS_ASSUME_NETWORK_UP_FOR_TEST=1", "TS_NO_LOGS_NO_SUPPORT=true")
	logf, err := os.Create(filepath.Join(dir, "tailscaled.log"))
	require.NoError(t, err)
	d.Stdout, d.Stderr = logf, logf
	require.NoError(t, d.Start())
	t.Cleanup(func() {
		d.Process.Kill()
		d.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("tailscaled log tail:\n%s", tail(string(b), 40))
		}
	})
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--socket=" + sock}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	eventually(t, 20*time.Second, "tailscaled socket", func() error {
		_, err := os.Stat(sock)
		return err
	})
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
		cmd := exec.CommandContext(ctx, cli, "--socket="+sock, "nc", host.IP().String(), "7777")
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

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

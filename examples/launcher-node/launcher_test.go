// Package launchernode runs the Node.js example launcher (client.mjs)
// against a live server: a second client, in another language, written
// from docs/api.md and docs/protocol.md alone.
package launchernode_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

// nodeCommand returns how to run node with a global WebSocket (Node 22+
// has it, Node 20.10+ behind a flag). Without such a node the test skips,
// unless ROOMNET_TEST_REQUIRE_NODE is set (CI sets it): then it fails.
func nodeCommand(t *testing.T) []string {
	skip := t.Skip
	if os.Getenv("ROOMNET_TEST_REQUIRE_NODE") != "" {
		skip = t.Fatal
	}
	path, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed; the Node example client needs Node.js 20.10 or later")
	}
	for _, args := range [][]string{{path}, {path, "--experimental-websocket"}} {
		out, err := exec.Command(args[0], append(args[1:], "-e", "process.stdout.write(typeof WebSocket)")...).Output()
		if err == nil && string(out) == "function" {
			return args
		}
	}
	skip("node has no WebSocket, even with --experimental-websocket: want Node.js 20.10 or later")
	return nil
}

// TestNodeLauncherAgainstALiveServer runs the example end to end: REST
// accounts, a private room joined by invite, chat sends with acks, pushed
// messages in order, and history by cursor.
func TestNodeLauncherAgainstALiveServer(t *testing.T) {
	node := nodeCommand(t)
	h := roomnettest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // seconds when the machine is idle
	defer cancel()
	cmd := exec.CommandContext(ctx, node[0], append(node[1:], "client.mjs", h.URL)...)
	out, err := cmd.CombinedOutput()
	t.Logf("client.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the Node client failed: %v", err)
	}
	for _, want := range []string{"joined by invite", "retry answered", "bob: received", "history by cursor", "ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
}

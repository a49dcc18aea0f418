package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet/cli"
	"github.com/roomnet/roomnet/roomnettest"
)

var binary string

func TestMain(m *testing.M) {
	// The test binary may be the embedded Headscale child: that check
	// comes first, before anything is built.
	roomnettest.MainWith(m, func() func() {
		// ROOMNET_CLI_BINARY runs the tests against another build (an
		// older one: does a new test fail before its fix?).
		if b := os.Getenv("ROOMNET_CLI_BINARY"); b != "" {
			binary = b
			return func() {}
		}
		dir, err := os.MkdirTemp("", "roomnet-cli")
		if err != nil {
			panic(err)
		}
		binary = filepath.Join(dir, "roomnet")
		out, err := exec.Command("go", "build", "-o", binary, "../../cmd/roomnet").CombinedOutput()
		if err != nil {
			panic(fmt.Sprintf("building roomnet: %v\n%s", err, out))
		}
		return func() { os.RemoveAll(dir) }
	})
}

// user runs the real roomnet binary with its own config dir.
type user struct {
	t   *testing.T
	dir string
}

func newUser(t *testing.T) *user { return &user{t: t, dir: t.TempDir()} }

func (u *user) cmd(stdin string, args ...string) *exec.Cmd {
	c := exec.Command(binary, args...)
	c.Env = append(os.Environ(), "ROOMNET_CONFIG_DIR="+u.dir,
		"TS_DEBUG_NEVER_DIRECT_UDP=true", "TS_ASSUME_NETWORK_UP_FOR_TEST=1")
	c.Stdin = strings.NewReader(stdin)
	return c
}

// run runs a command to its end and returns its exit code and output.
func (u *user) run(stdin string, args ...string) (int, string, string) {
	u.t.Helper()
	c := u.cmd(stdin, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		u.t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// bg is a long-running command whose stdout lines are collected.
type bg struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan int
	errb  bytes.Buffer // stderr: read it once the command ended
}

func (u *user) start(args ...string) *bg {
	u.t.Helper()
	b := &bg{cmd: u.cmd("", args...), done: make(chan int, 1)}
	out, err := b.cmd.StdoutPipe()
	require.NoError(u.t, err)
	b.cmd.Stderr = &b.errb
	require.NoError(u.t, b.cmd.Start())
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
		}
		err := b.cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		b.done <- code
	}()
	u.t.Cleanup(func() {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			b.cmd.Process.Kill()
		}
		if u.t.Failed() {
			u.t.Logf("%v stderr:\n%s", args, b.errb.String())
		}
	})
	return b
}

// await returns the text after prefix on the first stdout line that has it.
func (b *bg) await(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, l := range b.lines {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				b.mu.Unlock()
				return strings.TrimSpace(rest)
			}
		}
		b.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Fatalf("no line %q in %q", prefix, b.lines)
	return ""
}

// exits waits for the command to end (after sig, unless 0) and checks its exit code.
func (b *bg) exits(t *testing.T, sig syscall.Signal, want int, what string) {
	t.Helper()
	if sig != 0 {
		require.NoError(t, b.cmd.Process.Signal(sig))
	}
	select {
	case code := <-b.done:
		require.Equal(t, want, code, what)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: did not exit", what)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// fakeGame echoes TCP lines and UDP datagrams on 127.0.0.1:port, like a
// game server that "direct connect" players reach.
func fakeGame(t *testing.T, port int) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	roomnettest.ServeEcho(t, ln, pc, "game:")
}

func TestHostAndJoinWithTheRealBinary(t *testing.T) {
	h := roomnettest.New(t)
	h.User("alice")
	h.User("bob")
	h.User("carol")
	alice, bob, carol, nobody := newUser(t), newUser(t), newUser(t), newUser(t)
	for name, u := range map[string]*user{"alice": alice, "bob": bob, "carol": carol} {
		code, out, errs := u.run("password-"+name+"\n", "login", "--server", h.URL, "--username", name, "--password-stdin")
		require.Equal(t, 0, code, errs)
		require.Contains(t, out, "logged in")
		fi, err := os.Stat(filepath.Join(u.dir, "config.json"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the token file must be private")
	}
	code, out, _ := alice.run("", "whoami", "--json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"username": "alice"`)

	port := freePort(t)
	fakeGame(t, port)
	host := alice.start("host", "--name", "cli room", "--game", "fake", "--max", "2",
		"--port", fmt.Sprintf("%d/tcp", port), "--port", fmt.Sprintf("%d/udp", port))
	link := host.await(t, "link:")
	invite := host.await(t, "invite code:")
	require.Equal(t, "roomnet://join/"+invite, link)
	host.await(t, "node up:")

	// The player joins by link and reaches the host's game on its own
	// 127.0.0.2, over TCP and UDP, through two userspace nodes.
	player := bob.start("join", link, "--bind", "127.0.0.2")
	player.await(t, "host reached at")
	player.await(t, "+ alice")
	require.Regexp(t, `^100\.64\.\d+\.\d+ relayed via roomnet, \d+\.\d+ ms$`, player.await(t, "  alice "), "the live view shows how the host is reached, with the round trip's precision")
	// The session reports its links; admins see them beside the member.
	require.Eventually(t, func() bool {
		rooms, err := h.Admin.AdminRooms(context.Background(), url.Values{"q": {"cli room"}})
		if err != nil || len(rooms.Rooms) != 1 {
			return false
		}
		members, err := h.Admin.Members(context.Background(), rooms.Rooms[0].ID)
		if err != nil {
			return false
		}
		for _, m := range members {
			for _, l := range m.Links {
				if m.Username == "bob" && l.Peer == "alice" && !l.Direct && l.Relay != "" && l.RTTMS > 0 {
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "bob's session reports that it reaches alice through the relay")
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.2:%d", port), 10*time.Second)
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintln(c, "hello over the room")
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "game:hello over the room\n", line)
	c.Close()
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.2:%d", port))
	require.NoError(t, err)
	defer u.Close()
	buf := make([]byte, 100)
	deadline := time.Now().Add(20 * time.Second)
	for {
		u.Write([]byte("ping"))
		u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := u.Read(buf)
		if err == nil {
			require.Equal(t, "game:ping", string(buf[:n]))
			break
		}
		require.True(t, time.Now().Before(deadline), "no UDP answer through the room")
	}

	// status --json from the player's machine.
	code, out, errs := bob.run("", "status", "--json")
	require.Equal(t, 0, code, errs)
	var st cli.StatusOutput
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Len(t, st.Members, 2)
	require.Equal(t, []string{fmt.Sprintf("%d/tcp", port), fmt.Sprintf("%d/udp", port)}, st.Room.Ports)

	// ping reaches the running session's node from another process.
	code, out, errs = bob.run("", "ping", "alice", "--count", "2", "--json")
	require.Equal(t, 0, code, errs)
	pings := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, pings, 2)
	for _, l := range pings {
		var r cli.PingResult
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		require.Equal(t, "alice", r.Member)
		require.Positive(t, r.RTTMS)
		require.Empty(t, r.Error)
	}
	code, out, errs = bob.run("", "ping", "mallory")
	require.Equal(t, cli.ExitError, code, "pinging a non-member fails")
	require.Empty(t, out)
	require.Equal(t, "roomnet: mallory: no such member with a node in the room\n", errs, "one error, said once")
	code, _, _ = carol.run("", "ping", "alice")
	require.Equal(t, cli.ExitError, code, "no session runs for carol")

	// Room chat from the terminal.
	code, _, errs = alice.run("", "chat", "--send", "gl hf")
	require.Equal(t, 0, code, errs)
	code, out, errs = bob.run("", "chat", "--tail")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "alice: gl hf")
	code, _, _ = carol.run("", "chat", "--room", st.Room.ID, "--send", "let me in")
	require.Equal(t, cli.ExitError, code, "a non-member cannot post")
	code, _, errs = alice.run("", "chat", "--lobby", "general", "--send", "anyone for cs?")
	require.Equal(t, 0, code, errs)
	code, out, errs = bob.run("", "chat", "--lobby", "general", "--tail")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "alice: anyone for cs?")
	code, out, errs = bob.run("typed line\n", "chat", "--json")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, `"body":"gl hf"`)
	code, out, _ = alice.run("", "chat", "--tail")
	require.Equal(t, 0, code)
	require.Contains(t, out, "bob: typed line", "a line typed on stdin was sent before EOF ended the session")

	// Errors a launcher branches on.
	for _, tc := range []struct {
		who  *user
		args []string
		code int
	}{
		{carol, []string{"join", "roomnet://join/"}, cli.ExitUsage},
		{carol, []string{"join", "roomnet://leave/ABCDEFGH"}, cli.ExitUsage},
		{carol, []string{"join", "not a code!"}, cli.ExitUsage},
		{carol, []string{"join", "ZZZZZZZZ"}, cli.ExitNotFound},
		{carol, []string{"join", link}, cli.ExitRoomFull},
		{nobody, []string{"rooms"}, cli.ExitUnauthorized},
		{carol, []string{"frobnicate"}, cli.ExitUsage},
		{carol, []string{"host", "--game", "fake", "--lan", "doom95"}, cli.ExitUsage},
		{carol, []string{"create", "--game", "fake", "--lan", "broadcast:0"}, cli.ExitUsage},
		{carol, []string{"host", "--game", "fake", "--profiles", "/nonexistent.json"}, cli.ExitUsage},
		{carol, []string{"host", "--game", "fake", "--relay-port", "70000"}, cli.ExitUsage},
		{carol, []string{"join", "ZZZZZZZZ", "--relay-port", "40000", "--tun"}, cli.ExitUsage},
	} {
		code, _, errs := tc.who.run("", tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errs)
	}
	code, _, _ = nobody.run("x\n", "login", "--server", "http://127.0.0.1:1", "--username", "x", "--password-stdin")
	require.Equal(t, cli.ExitUnreachable, code)
	code, _, _ = nobody.run("wrong\n", "login", "--server", h.URL, "--username", "carol", "--password-stdin")
	require.Equal(t, cli.ExitUnauthorized, code)
	code, out, _ = alice.run("", "create", "--name", "locked", "--password", "sesame", "--json")
	require.Equal(t, 0, code)
	var locked struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(out), &locked))
	code, _, _ = carol.run("", "join", locked.ID, "--password", "wrong")
	require.Equal(t, cli.ExitWrongPassword, code)
	code, out, _ = carol.run("", "rooms", "--json")
	require.Equal(t, 0, code)
	require.Contains(t, out, "locked")

	// A kick ends the player's session with its exit code.
	code, _, errs = alice.run("", "kick", "bob")
	require.Equal(t, 0, code, errs)
	player.exits(t, 0, cli.ExitKicked, "the kicked player's roomnet")

	// A launcher runs join --json and reads one event per line.
	launcher := carol.start("join", invite, "--json", "--bind", "127.0.0.3")
	launcher.await(t, `{"event":"host_reached"`)
	launcher.await(t, `{"event":"member_joined","member":"alice"`)
	launcher.exits(t, syscall.SIGTERM, 0, "roomnet join --json on SIGTERM")
	var events []string
	launcher.mu.Lock()
	for _, l := range launcher.lines {
		var ev struct {
			Event string
			IP    string
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ev), "stdout line is not JSON: %q", l)
		events = append(events, ev.Event)
	}
	launcher.mu.Unlock()
	require.Subset(t, events, []string{"contacting", "room", "key_issued", "node_up", "host_reached", "member_joined", "leaving"})
	require.Equal(t, "contacting", events[0])
	require.Equal(t, "leaving", events[len(events)-1])
	// Leaving from another terminal ends the session normally: a left
	// event, no error event.
	launcher = carol.start("join", invite, "--json", "--bind", "127.0.0.3")
	launcher.await(t, `{"event":"host_reached"`)
	code, _, errs = carol.run("", "leave")
	require.Equal(t, 0, code, errs)
	launcher.exits(t, 0, 0, "roomnet join --json after roomnet leave")
	launcher.mu.Lock()
	last := launcher.lines[len(launcher.lines)-1]
	for _, l := range launcher.lines {
		require.NotContains(t, l, `"event":"error"`, "a normal leave is no error")
	}
	launcher.mu.Unlock()
	require.Contains(t, last, `"event":"left"`)
	code, out, _ = carol.run("", "join", "ZZZZZZZZ", "--json")
	require.Equal(t, cli.ExitNotFound, code)
	require.Contains(t, out, `{"code":`+fmt.Sprint(cli.ExitNotFound)+`,"event":"error"`, "a launcher reads the failure from the stream too")

	// Ctrl-C on the host leaves; the last member leaving closes the room.
	host.exits(t, syscall.SIGINT, 0, "the host's roomnet on SIGINT")
	code, _, _ = carol.run("", "join", link)
	require.Equal(t, cli.ExitRoomClosed, code)
}

// login signs a CLI user in.
func (u *user) login(t *testing.T, h *roomnettest.Harness, name string) {
	code, _, errs := u.run("password-"+name+"\n", "login", "--server", h.URL, "--username", name, "--password-stdin")
	require.Equal(t, 0, code, errs)
}

// With --tun the CLI drives the official Tailscale client through its
// LocalAPI: it joins the room, reaches the host, answers ping, and is
// logged out of the room when the session ends.
func TestJoinWithTheOfficialClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tailscaled")
	}
	ts := roomnettest.StartTailscaled(t)
	h := roomnettest.New(t)
	h.User("alice")
	h.User("bob")
	alice, bob := newUser(t), newUser(t)
	alice.login(t, h, "alice")
	bob.login(t, h, "bob")
	host := alice.start("host", "--name", "tun room", "--game", "fake")
	invite := host.await(t, "invite code:")
	host.await(t, "node up:")

	player := bob.start("join", invite, "--tun", "--tailscale-socket", ts.Socket, "--json")
	player.await(t, `{"event":"host_reached"`)
	up := player.await(t, `{"event":"node_up"`)
	status := func() (state string, peers int) {
		out, err := ts.Run(10*time.Second, "status", "--json")
		require.NoError(t, err, out)
		var st struct {
			BackendState string
			Peer         map[string]any
		}
		require.NoError(t, json.Unmarshal([]byte(out), &st))
		return st.BackendState, len(st.Peer)
	}
	state, peers := status()
	require.Equal(t, "Running", state)
	require.Equal(t, 1, peers, "the official client sees the room's host and nothing else")
	require.Contains(t, up, `"ip":"100.64.`)

	code, out, errs := bob.run("", "ping", "alice", "--count", "1")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "ms relayed via")

	player.exits(t, syscall.SIGTERM, 0, "roomnet join --tun on SIGTERM")
	state, _ = status()
	require.NotEqual(t, "Running", state, "the official client must leave the room with the session")
}

package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/cli"
	"github.com/roomnet/roomnet/roomnettest"
)

// config reads a CLI user's config file.
func (u *user) config(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.dir, "config.json"))
	require.NoError(t, err)
	var c map[string]string
	require.NoError(t, json.Unmarshal(b, &c))
	return c
}

// createJSON runs roomnet create --json and returns the room.
func (u *user) createJSON(t *testing.T, args ...string) roomnet.Room {
	t.Helper()
	code, out, errs := u.run("", append([]string{"create", "--json"}, args...)...)
	require.Equal(t, 0, code, errs)
	var r roomnet.Room
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	return r
}

// Account commands a new user meets first: register, a login with a
// wrong password, a prompt that does not echo, --version, logout, and a
// login that expired.
func TestAccountCommands(t *testing.T) {
	h := roomnettest.New(t)
	h.User("alice")
	dave, alice := newUser(t), newUser(t)

	code, out, _ := dave.run("", "--version")
	require.Equal(t, 0, code)
	require.Regexp(t, `^roomnet \S+ \(go`, out)

	code, out, errs := dave.run("secret-dave-1\n", "register", "--server", h.URL, "--username", "dave", "--password-stdin")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "registered dave")
	require.Contains(t, out, "logged in to "+h.URL+" as dave")
	code, out, _ = dave.run("", "whoami")
	require.Equal(t, 0, code)
	require.Contains(t, out, "dave (player)")
	code, _, errs = dave.run("secret-dave-1\n", "register", "--server", h.URL, "--username", "dave", "--password-stdin")
	require.Equal(t, cli.ExitError, code)
	require.Contains(t, errs, "username is taken")

	code, _, errs = alice.run("wrong\n", "login", "--server", h.URL, "--username", "alice", "--password-stdin")
	require.Equal(t, cli.ExitUnauthorized, code)
	require.Contains(t, errs, "wrong username or password")
	require.NotContains(t, errs, "run roomnet login", "a refused login is not a missing one")

	// The password typed at the prompt is not echoed on the terminal.
	c := alice.cmd("", "login", "--server", h.URL, "--username", "alice")
	c.Stdin, c.Stdout, c.Stderr = nil, nil, nil
	tty, err := pty.Start(c)
	require.NoError(t, err)
	defer tty.Close()
	screen := &lockedBuffer{}
	read := make(chan struct{})
	go func() { io.Copy(screen, tty); close(read) }()
	require.Eventually(t, func() bool { return strings.Contains(ptyEscapes.ReplaceAllString(screen.String(), ""), "password: ") }, 30*time.Second, 20*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the terminal's echo is switched off right after the prompt
	_, err = tty.Write([]byte("password-alice\r"))
	require.NoError(t, err)
	require.NoError(t, c.Wait())
	<-read
	require.Contains(t, screen.String(), "logged in")
	require.NotContains(t, screen.String(), "password-alice", "the password was echoed")

	code, out, _ = dave.run("", "logout")
	require.Equal(t, 0, code)
	require.Contains(t, out, "logged out dave from "+h.URL)
	code, out, _ = dave.run("", "logout")
	require.Equal(t, 0, code)
	require.Contains(t, out, "not logged in")

	// A login that expired (revoked here): a clear message, not
	// "cannot reach the server".
	token := alice.config(t)["token"]
	require.NoError(t, roomnet.NewClient(h.URL).WithToken(token).Logout(context.Background()))
	for _, args := range [][]string{{"chat", "--lobby", "general", "--tail"}, {"rooms"}, {"whoami"}} {
		code, _, errs = alice.run("", args...)
		require.Equal(t, cli.ExitUnauthorized, code, "%v: %s", args, errs)
		require.Contains(t, errs, "login expired or was revoked: run roomnet login", args)
	}
}

var ptyEscapes = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`)

// lockedBuffer is a buffer written by one goroutine and read by another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The web lobby's "Create a room" makes the room through the API and
// hands over roomnet join CODE: run by the host, that hosts the room.
func TestHostJoiningTheirOwnRoomHostsIt(t *testing.T) {
	h := roomnettest.New(t)
	h.User("alice")
	h.User("bob")
	alice, bob := newUser(t), newUser(t)
	alice.login(t, h, "alice")
	bob.login(t, h, "bob")
	port := freePort(t)
	fakeGame(t, port)
	r := alice.createJSON(t, "--name", "web room", "--game", "fake", "--port", fmt.Sprintf("%d/tcp", port))

	host := alice.start("join", r.InviteCode, "--wait", "5s")
	host.await(t, "you host this room")
	host.await(t, "node up:")
	// --lan broadcast:PORT as documented: the bridge starts.
	player := bob.start("join", r.InviteCode, "--bind", "127.0.0.4", "--lan", "broadcast:47000", "--json")
	player.await(t, `{"event":"host_reached"`)
	player.await(t, `{"discovery":["broadcast 47000/udp"],"event":"lan_bridge","from":"here","profile":"broadcast:47000"`)
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.4:%d", port), 10*time.Second)
	require.NoError(t, err)
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintln(conn, "hi host")
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "game:hi host\n", line, "the host's session serves the room's game ports")
	conn.Close()
	code, out, errs := alice.run("", "status")
	require.Equal(t, 0, code, errs)
	require.Regexp(t, `alice\s+host\s+online`, out)
	player.exits(t, syscall.SIGTERM, 0, "the player leaves")

	// The host's login expires while the session runs: Ctrl-C says that
	// leaving failed, and the room stays listed for roomnet leave.
	require.NoError(t, roomnet.NewClient(h.URL).WithToken(alice.config(t)["token"]).Logout(context.Background()))
	host.exits(t, syscall.SIGINT, cli.ExitUnauthorized, "the host's session cannot leave")
	require.Contains(t, host.errb.String(), "leaving room "+r.ID+" failed (your login expired or was revoked: run roomnet login)")
	require.Equal(t, r.ID, alice.config(t)["room"], "the room is still listed")
	alice.login(t, h, "alice")
	code, out, errs = alice.run("", "leave")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "left room "+r.ID)
}

// After a kick or a close the room is dead: status does not show it as
// live and leave forgets it with a clear message.
func TestDeadRoomIsForgotten(t *testing.T) {
	h := roomnettest.New(t)
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		h.User(n)
	}
	alice, bob, carol, dave := newUser(t), newUser(t), newUser(t), newUser(t)
	alice.login(t, h, "alice")
	bob.login(t, h, "bob")
	carol.login(t, h, "carol")
	dave.login(t, h, "dave")
	// The host bridges a game of their own profiles file.
	profiles := filepath.Join(t.TempDir(), "mine.json")
	require.NoError(t, os.WriteFile(profiles, []byte(`[{"name":"mygame","discovery":[{"method":"broadcast","port":47010}]}]`), 0o600))
	host := alice.start("host", "--name", "doomed", "--game", "mygame", "--profiles", profiles, "--max", "4")
	invite := host.await(t, "invite code:")
	host.await(t, "node up:")
	var sessions []*bg
	for _, u := range []*user{bob, carol, dave} {
		if u == bob {
			// A player without that file learns the profile from the
			// host's bridge, and is told.
			s := u.start("join", invite, "--json")
			s.await(t, `{"event":"host_reached"`)
			s.await(t, `{"discovery":["broadcast 47010/udp"],"event":"lan_bridge","from":"host","profile":"mygame"`)
			sessions = append(sessions, s)
			continue
		}
		s := u.start("join", invite)
		s.await(t, "host reached at")
		sessions = append(sessions, s)
	}
	roomID := bob.config(t)["room"]
	require.NotEmpty(t, roomID)

	// Kicked: the session ends with 13 and forgets the room.
	code, _, errs := alice.run("", "kick", "bob")
	require.Equal(t, 0, code, errs)
	sessions[0].exits(t, 0, cli.ExitKicked, "bob's session")
	require.Empty(t, bob.config(t)["room"], "the kicked session forgot the room")
	code, _, _ = bob.run("", "status")
	require.NotEqual(t, 0, code, "status shows a room bob was kicked from as live")

	// Sessions that died without a word (killed, crashed) leave the room
	// in the config; the room is then closed.
	for _, s := range sessions[1:] {
		require.NoError(t, s.cmd.Process.Kill())
		<-s.done
	}
	code, _, errs = alice.run("", "kick", "dave")
	require.Equal(t, 0, code, errs)
	code, out, errs := dave.run("", "leave")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "you were kicked from room "+roomID)
	require.Empty(t, dave.config(t)["room"])

	code, _, errs = alice.run("", "close")
	require.Equal(t, 0, code, errs)
	host.exits(t, 0, cli.ExitRoomClosed, "the host's session of a room closed from another terminal")
	require.Empty(t, alice.config(t)["room"])
	code, _, errs = carol.run("", "status")
	require.Equal(t, cli.ExitRoomClosed, code, "status of a closed room")
	require.Contains(t, errs, "room "+roomID+" was closed; forgotten here")
	code, _, errs = carol.run("", "leave")
	require.Equal(t, cli.ExitUsage, code, "the room was forgotten: %s", errs)
	require.Contains(t, errs, "not in a room here")

	// leave itself forgets a closed room.
	s := bob.config(t)
	s["room"] = roomID
	b, _ := json.Marshal(s)
	require.NoError(t, os.WriteFile(filepath.Join(bob.dir, "config.json"), b, 0o600))
	code, out, errs = bob.run("", "leave")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "room "+roomID+" was closed; forgotten here")
	require.Empty(t, bob.config(t)["room"])
}

// Passwords and private rooms: an invite needs no password (and says
// so), a locked room asks for one when none was given, a private room
// joined by id has its own exit code; a host without a running session
// makes players wait with a reason and a clear end.
func TestJoinPasswordsAndAnAbsentHost(t *testing.T) {
	h := roomnettest.New(t)
	h.User("alice")
	h.User("carol")
	alice, carol := newUser(t), newUser(t)
	alice.login(t, h, "alice")
	carol.login(t, h, "carol")
	locked := alice.createJSON(t, "--name", "locked", "--password", "sesame")
	private := alice.createJSON(t, "--name", "secret", "--private")

	code, _, errs := carol.run("", "join", locked.ID)
	require.Equal(t, cli.ExitWrongPassword, code)
	require.Contains(t, errs, "this room needs a password")
	code, _, errs = carol.run("", "join", locked.ID, "--password", "wrong")
	require.Equal(t, cli.ExitWrongPassword, code)
	require.Contains(t, errs, "wrong room password")
	// The server does not say that a private room exists to outsiders:
	// by id it is "no such room", and the message points to invite codes.
	code, _, errs = carol.run("", "join", private.ID)
	require.Equal(t, cli.ExitNotFound, code, errs)
	require.Contains(t, errs, "invite code")

	// By invite, the password is not needed, and the player is told. The
	// room was made with roomnet create: its host has no node.
	code, out, errs := carol.run("", "join", locked.InviteCode, "--password", "wrong", "--wait", "2s", "--json")
	require.Equal(t, cli.ExitNodeFailed, code, errs)
	require.Contains(t, errs, "an invite code stands in for the room password")
	require.Contains(t, out, `"event":"waiting_host"`)
	require.Contains(t, out, `"host":"alice"`)
	require.Contains(t, errs, "the host alice did not come online within 2s")
	// Without --json the wait is said on stderr.
	code, _, errs = carol.run("", "join", private.InviteCode, "--wait", "1s")
	require.Equal(t, cli.ExitNodeFailed, code)
	require.Contains(t, errs, "waiting for the host alice to come online")
}

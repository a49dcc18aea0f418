// Package cli is the roomnet command for hosts and players: log in, list
// and create rooms, host or join one (a userspace node that forwards the
// host's game ports), and leave, kick or close from another terminal. It
// is built on the roomnet SDK only and never imports server packages.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/roomnet/roomnet/roomnet"
)

// Exit codes a launcher can branch on (docs/cli.md).
const (
	ExitOK            = 0
	ExitError         = 1  // anything else
	ExitUsage         = 2  // bad command line, malformed code or link
	ExitUnreachable   = 3  // the server could not be reached
	ExitUnauthorized  = 4  // not logged in, or the login was refused
	ExitWrongPassword = 10 // the room's password was wrong
	ExitRoomFull      = 11
	ExitRoomClosed    = 12
	ExitKicked        = 13
	ExitNodeFailed    = 14 // the key expired or the node could not come up
	ExitNotFound      = 15 // no such room or invite
	ExitForbidden     = 16 // not allowed: kick or close by a non-host
	ExitNoCapacity    = 17 // the server takes no new rooms now; joining still works
	ExitDoctor        = 18 // roomnet doctor found a problem that stops rooms from working
)

// Env is what a command sees of its process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Version is the build's version ("" : the module version Go
	// recorded, or "dev").
	Version string
}

// exitError carries an exit code and a message for people.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Run runs one command and returns the process exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		usage(env.Stderr)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "login":
		err = cmdLogin(ctx, rest, env)
	case "register":
		err = cmdRegister(ctx, rest, env)
	case "version", "--version", "-version":
		fmt.Fprintln(env.Stdout, "roomnet", version(env))
		return ExitOK
	case "profiles":
		err = cmdProfiles(ctx, rest, env)
	case "logout":
		err = cmdLogout(ctx, rest, env)
	case "whoami":
		err = cmdWhoami(ctx, rest, env)
	case "rooms":
		err = cmdRooms(ctx, rest, env)
	case "create":
		err = cmdCreate(ctx, rest, env)
	case "host":
		err = cmdHost(ctx, rest, env)
	case "join", "open":
		err = cmdJoin(ctx, rest, env)
	case "status":
		err = cmdStatus(ctx, rest, env)
	case "leave":
		err = cmdLeave(ctx, rest, env)
	case "kick":
		err = cmdKick(ctx, rest, env)
	case "close":
		err = cmdClose(ctx, rest, env)
	case "ping":
		err = cmdPing(ctx, rest, env)
	case "chat":
		err = cmdChat(ctx, rest, env)
	case "doctor":
		err = cmdDoctor(ctx, rest, env)
	case "help", "-h", "--help":
		usage(env.Stdout)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "roomnet: unknown command %q\n", cmd)
		usage(env.Stderr)
		return ExitUsage
	}
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	code := exitCode(err)
	fmt.Fprintln(env.Stderr, "roomnet:", message(err))
	return code
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: roomnet <command> [flags]

  login --server URL [--username U] [--password-stdin]   sign in (token kept in your config dir)
  register --server URL [--username U] [--password-stdin] create an account and sign in
  logout | whoami [--json] | version (or --version)
  rooms [--game G] [--json]                              public rooms
  create --name N [--game G] [--max N] [--private] [--password P] [--port 27015/udp]... [--json]
  host   --name N [--game G] [--max N] [...create flags]   create a room and stay in it
  join   <room id | invite code | roomnet://join/CODE> [--password P] [--bind 127.0.0.1] [--wait 30s]
                                                         (your own room: you host it)
  open   roomnet://join/CODE                             what a launcher's URL handler runs
  status [--json] | leave | kick <member> | close         the room this machine is in
  ping   <member> [--count N] [--json]                   round trip over the room (from the running session)
  chat   [--room ID | --lobby NAME] [--send TEXT | --tail] [--json]   room chat in the terminal
  profiles [--profiles FILE] [--json]                    the games whose LAN discovery is bridged
  doctor [--server URL] [--json]                         preflight: server, login, relays, UDP, NAT, port mapping, MTU
  doctor --room [--count N] [--json]                     in a room: the members × members matrix (from the running session)

Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable, 4 not logged in,
10 wrong password, 11 room full, 12 room closed, 13 kicked, 14 node failed
or key expired, 15 no such room or invite (a private room joined by id
is not found: use its invite code), 16 not allowed (kick or close by a
non-host), 17 the server takes no new rooms now (try later, or join one),
18 doctor found a problem that stops rooms from working.
`)
}

// exitCode maps SDK errors to exit codes.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ae *roomnet.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case roomnet.CodeUnauthorized:
			return ExitUnauthorized
		case roomnet.CodeWrongPassword:
			return ExitWrongPassword
		case roomnet.CodeRoomFull:
			return ExitRoomFull
		case roomnet.CodeRoomClosed:
			return ExitRoomClosed
		case roomnet.CodeKicked:
			return ExitKicked
		case roomnet.CodeNotFound:
			return ExitNotFound
		case roomnet.CodeForbidden, roomnet.CodeBanned:
			return ExitForbidden
		case roomnet.CodeCapacity:
			return ExitNoCapacity
		case roomnet.CodeSignupDisabled:
			return ExitUnauthorized
		case roomnet.CodeBadRequest, roomnet.CodeInvalidJSON:
			return ExitUsage
		}
		return ExitError
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) {
		return ExitUnreachable
	}
	return ExitError
}

// message words an error for a player.
func message(err error) string {
	var ae *roomnet.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case roomnet.CodeUnauthorized:
			return "your login expired or was revoked: run roomnet login"
		case roomnet.CodeWrongPassword:
			return "wrong room password"
		case roomnet.CodeRoomFull:
			return "the room is full"
		case roomnet.CodeRoomClosed:
			return "the room was closed"
		case roomnet.CodeKicked:
			return "you were kicked from this room"
		case roomnet.CodeNotFound:
			return "no such room or invite code"
		case roomnet.CodeAlreadyMember:
			return "you are already in this room"
		case roomnet.CodeForbidden:
			if m := strings.TrimPrefix(ae.Message, "forbidden: "); m != "" && m != "forbidden" {
				return "not allowed: " + m
			}
			return "not allowed"
		case roomnet.CodeBanned:
			return banned(ae)
		case roomnet.CodeUsernameTaken:
			return "that username is taken"
		case roomnet.CodeSignupDisabled:
			return "this server does not take sign-ups: ask its admin for an account"
		case roomnet.CodeCapacity:
			return "the server is full and takes no new rooms right now: try again in a minute, or join an existing room"
		}
		return ae.Message
	}
	if exitCode(err) == ExitUnreachable {
		return "cannot reach the server: " + err.Error()
	}
	return err.Error()
}

// banned words a ban for its player: "this account is banned until
// <time> because <reason>", or "this account is banned: <reason>" for
// good. (An older server says only "forbidden".)
func banned(ae *roomnet.Error) string {
	s := "this account is banned"
	if ae.Until != nil {
		s += " until " + ae.Until.Local().Format("2006-01-02 15:04 MST")
		if ae.Reason != "" {
			s += " because " + ae.Reason
		}
	} else if ae.Reason != "" {
		s += ": " + ae.Reason
	}
	return s
}

// state is what the CLI keeps in the user's config dir (0600).
type state struct {
	Server   string `json:"server"`
	Token    string `json:"token"`
	Username string `json:"username"`
	Room     string `json:"room,omitempty"` // the room this machine is in
}

func stateDir(env Env) (string, error) {
	if d := env.Getenv("ROOMNET_CONFIG_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "roomnet"), nil
}

func loadState(env Env) (state, error) {
	var s state
	dir, err := stateDir(env)
	if err != nil {
		return s, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func saveState(env Env, s state) error {
	dir, err := stateDir(env)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := filepath.Join(dir, "config.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "config.json"))
}

// client returns an authenticated SDK client or an exit error.
func client(env Env) (*roomnet.Client, state, error) {
	s, err := loadState(env)
	if err != nil {
		return nil, s, err
	}
	if s.Token == "" || s.Server == "" {
		return nil, s, fail(ExitUnauthorized, "not logged in: run roomnet login --server URL")
	}
	return roomnet.NewClient(s.Server).WithToken(s.Token), s, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseTarget reads a room id, an invite code or a roomnet://join/CODE link.
func parseTarget(s string) (roomID, invite string, err error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "roomnet://"); ok {
		code, ok := strings.CutPrefix(rest, "join/")
		code = strings.TrimSuffix(code, "/")
		if !ok || !isInvite(code) {
			return "", "", fail(ExitUsage, "not a roomnet join link: %q (want roomnet://join/CODE)", s)
		}
		return "", strings.ToUpper(code), nil
	}
	if isInvite(s) && strings.ToUpper(s) == s {
		return "", s, nil
	}
	if isRoomID(s) {
		return s, "", nil
	}
	if isInvite(s) {
		return "", strings.ToUpper(s), nil
	}
	return "", "", fail(ExitUsage, "not a room id, invite code or roomnet:// link: %q", s)
}

func isInvite(s string) bool {
	if len(s) != 8 {
		return false
	}
	for _, r := range strings.ToUpper(s) {
		if !strings.ContainsRune("ABCDEFGHJKMNPQRSTVWXYZ23456789", r) {
			return false
		}
	}
	return true
}

func isRoomID(s string) bool {
	if len(s) != 10 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("abcdefghijkmnpqrstuvwxyz23456789", r) {
			return false
		}
	}
	return true
}

// version is the build's version and the Go release it was built with.
func version(env Env) string {
	v := env.Version
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return v + " (" + runtime.Version() + ")"
}

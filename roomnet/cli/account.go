package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/roomnet/roomnet/roomnet"
)

func newFlags(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("roomnet "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fail(ExitUsage, "%v", err)
	}
	return nil
}

// credentialFlags are the flags of login and register.
type credentialFlags struct {
	server, username *string
	fromStdin        *bool
}

func addCredentialFlags(fs *flag.FlagSet) credentialFlags {
	return credentialFlags{
		server:    fs.String("server", "", "server URL, e.g. http://127.0.0.1:8080"),
		username:  fs.String("username", "", "account name (prompted when empty)"),
		fromStdin: fs.Bool("password-stdin", false, "read the password from standard input (for scripts)"),
	}
}

// credentials asks for what the flags did not give: the server (the
// last one used by default), the username and the password, which a
// terminal does not echo. confirm asks for the password twice.
func (f credentialFlags) credentials(env Env, confirm bool) (server, username, password string, err error) {
	s, _ := loadState(env)
	server, username = *f.server, *f.username
	if server == "" {
		server = s.Server
	}
	if server == "" {
		return "", "", "", fail(ExitUsage, "--server is required the first time")
	}
	in := bufio.NewReader(env.Stdin)
	if username == "" {
		fmt.Fprint(env.Stderr, "username: ")
		line, _ := in.ReadString('\n')
		username = strings.TrimSpace(line)
	}
	if username == "" {
		return "", "", "", fail(ExitUsage, "no username given")
	}
	if *f.fromStdin {
		line, _ := in.ReadString('\n')
		password = strings.TrimRight(line, "\r\n")
	} else {
		if password, err = readPassword(env, in, "password: "); err != nil {
			return "", "", "", err
		}
		if confirm {
			again, err := readPassword(env, in, "password again: ")
			if err != nil {
				return "", "", "", err
			}
			if again != password {
				return "", "", "", fail(ExitUsage, "the passwords differ")
			}
		}
	}
	if password == "" {
		return "", "", "", fail(ExitUsage, "no password given")
	}
	return strings.TrimRight(server, "/"), username, password, nil
}

// readPassword reads a line with the prompt on stderr; on a terminal
// what is typed is not echoed.
func readPassword(env Env, in *bufio.Reader, prompt string) (string, error) {
	fmt.Fprint(env.Stderr, prompt)
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(b), nil
	}
	line, err := in.ReadString('\n')
	if err != nil && line == "" {
		return "", fail(ExitUsage, "no password given")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// login signs in and keeps the token (the room this machine is in stays
// when the same account signs in again).
func login(ctx context.Context, env Env, server, username, password string) error {
	c, resp, err := roomnet.NewClient(server).Login(ctx, username, password)
	if err != nil {
		var ae *roomnet.Error
		if errors.As(err, &ae) {
			switch ae.Code {
			case roomnet.CodeUnauthorized:
				return fail(ExitUnauthorized, "wrong username or password")
			case roomnet.CodeBanned, roomnet.CodeForbidden:
				return fail(ExitUnauthorized, "the server refused the login: %s", banned(ae))
			}
		}
		return err
	}
	old, _ := loadState(env)
	s := state{Server: server, Token: c.Token(), Username: resp.User.Username}
	if old.Server == server && strings.EqualFold(old.Username, resp.User.Username) {
		s.Room = old.Room
	}
	if err := saveState(env, s); err != nil {
		return fmt.Errorf("saving the login: %w", err)
	}
	fmt.Fprintf(env.Stdout, "logged in to %s as %s\n", server, resp.User.Username)
	return nil
}

func cmdLogin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("login", env)
	f := addCredentialFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	server, username, password, err := f.credentials(env, false)
	if err != nil {
		return err
	}
	return login(ctx, env, server, username, password)
}

// cmdRegister creates an account and signs in with it.
func cmdRegister(ctx context.Context, args []string, env Env) error {
	fs := newFlags("register", env)
	f := addCredentialFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	server, username, password, err := f.credentials(env, true)
	if err != nil {
		return err
	}
	u, err := roomnet.NewClient(server).Register(ctx, username, password)
	if err != nil {
		var ae *roomnet.Error
		if errors.As(err, &ae) && ae.Code == roomnet.CodeBadRequest {
			return fail(ExitUsage, "%s", ae.Message)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "registered %s on %s\n", u.Username, server)
	return login(ctx, env, server, username, password)
}

func cmdLogout(ctx context.Context, args []string, env Env) error {
	if err := parse(newFlags("logout", env), args); err != nil {
		return err
	}
	s, err := loadState(env)
	if err != nil {
		return err
	}
	if s.Token == "" {
		fmt.Fprintln(env.Stdout, "not logged in")
		return nil
	}
	c := roomnet.NewClient(s.Server).WithToken(s.Token)
	// The local token goes whatever the server says.
	if err := c.Logout(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "the server did not revoke the token (%s); it is forgotten here\n", message(err))
	}
	if err := saveState(env, state{Server: s.Server}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "logged out %s from %s\n", s.Username, s.Server)
	return nil
}

func cmdWhoami(ctx context.Context, args []string, env Env) error {
	fs := newFlags("whoami", env)
	asJSON := fs.Bool("json", false, "JSON output")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, s, err := client(env)
	if err != nil {
		return err
	}
	u, err := c.Me(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, map[string]any{"server": s.Server, "user": u})
	}
	fmt.Fprintf(env.Stdout, "%s (%s) on %s\n", u.Username, u.Role, s.Server)
	return nil
}

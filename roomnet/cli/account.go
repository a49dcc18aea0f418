package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"strings"

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

func cmdLogin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("login", env)
	server := fs.String("server", "", "server URL, e.g. http://127.0.0.1:8080")
	username := fs.String("username", "", "account name (prompted when empty)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from standard input (for scripts)")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, _ := loadState(env)
	if *server == "" {
		*server = s.Server
	}
	if *server == "" {
		return fail(ExitUsage, "--server is required the first time")
	}
	in := bufio.NewReader(env.Stdin)
	if *username == "" {
		fmt.Fprint(env.Stderr, "username: ")
		line, _ := in.ReadString('\n')
		*username = strings.TrimSpace(line)
	}
	if !*fromStdin {
		fmt.Fprint(env.Stderr, "password: ")
	}
	line, _ := in.ReadString('\n')
	password := strings.TrimRight(line, "\r\n")
	c, resp, err := roomnet.NewClient(*server).Login(ctx, *username, password)
	if err != nil {
		return err
	}
	if err := saveState(env, state{Server: strings.TrimRight(*server, "/"), Token: c.Token(), Username: resp.User.Username}); err != nil {
		return fmt.Errorf("saving the login: %w", err)
	}
	fmt.Fprintf(env.Stdout, "logged in to %s as %s\n", *server, resp.User.Username)
	return nil
}

func cmdLogout(ctx context.Context, args []string, env Env) error {
	if err := parse(newFlags("logout", env), args); err != nil {
		return err
	}
	c, s, err := client(env)
	if err != nil {
		return err
	}
	_ = c.Logout(ctx) // the local token goes whatever the server says
	return saveState(env, state{Server: s.Server})
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

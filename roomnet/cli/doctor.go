package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/roomnet/roomnet/roomnet/doctor"
)

// cmdDoctor runs the preflight: the server, the login, the relays, UDP,
// the NAT, the router's port mapping and the path's MTU, each with a
// verdict and what to do.
func cmdDoctor(ctx context.Context, args []string, env Env) error {
	fs := newFlags("doctor", env)
	server := fs.String("server", "", "server URL (default: the one you logged in to)")
	asJSON := fs.Bool("json", false, `one JSON object: {"ok":bool,"checks":[{"name","status","summary","advice"?,"details"?}]}`)
	timeout := fs.Duration("timeout", 3*time.Second, "bound of each probe")
	room := fs.Bool("room", false, "in a room: ping every member from this machine's session and print the members × members matrix")
	count := fs.Int("count", 5, "with --room: pings per member")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *count < 1 || *count > 100 {
		return fail(ExitUsage, "usage: roomnet doctor [--server URL] [--json] [--timeout 3s] | roomnet doctor --room [--count 5] [--json]")
	}
	if *room {
		return roomDoctor(ctx, env, *count, *asJSON)
	}
	s, err := loadState(env)
	if err != nil {
		return err
	}
	url, token := *server, s.Token
	if url == "" {
		url = s.Server
	}
	if url == "" {
		return fail(ExitUsage, "no server: log in first or give --server URL")
	}
	if s.Server != "" && strings.TrimRight(url, "/") != strings.TrimRight(s.Server, "/") {
		token = "" // the login is for another server
	}
	checks := doctor.Run(ctx, doctor.Options{Server: url, Token: token, Timeout: *timeout})
	failed := false
	for _, c := range checks {
		failed = failed || c.Status == doctor.Fail
	}
	if *asJSON {
		if err := json.NewEncoder(env.Stdout).Encode(map[string]any{"ok": !failed, "checks": checks}); err != nil {
			return err
		}
	} else {
		for _, c := range checks {
			fmt.Fprintf(env.Stdout, "%-4s  %-7s  %s\n", c.Status, c.Name, c.Summary)
			if c.Advice != "" {
				fmt.Fprintf(env.Stdout, "               → %s\n", c.Advice)
			}
		}
	}
	if failed {
		return fail(ExitDoctor, "a check failed: rooms will not work from here until it is fixed")
	}
	return nil
}

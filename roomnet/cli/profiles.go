package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/roomnet/roomnet/roomnet/lan"
)

// cmdProfiles lists the game profiles whose LAN discovery the bridge
// carries: the built-in ones and those of a --profiles file.
func cmdProfiles(_ context.Context, args []string, env Env) error {
	fs := newFlags("profiles", env)
	file := fs.String("profiles", "", "a JSON file of more game profiles")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := parse(fs, args); err != nil {
		return err
	}
	cat := lan.Builtin()
	if *file != "" {
		if err := cat.Extend(*file); err != nil {
			return fail(ExitUsage, "%v", err)
		}
	}
	var list []lan.Profile
	for _, name := range cat.Names() {
		list = append(list, cat[name])
	}
	if *asJSON {
		return printJSON(env.Stdout, list)
	}
	for _, p := range list {
		var disc []string
		for _, d := range p.Discovery {
			disc = append(disc, d.String())
		}
		line := fmt.Sprintf("%-16s %-44s %s", p.Name, p.Title, strings.Join(disc, ", "))
		if len(p.Ports) > 0 {
			line += "; game ports " + strings.Join(p.Ports, ", ")
		}
		if len(p.Aliases) > 0 {
			line += "; also --game " + strings.Join(p.Aliases, ", ")
		}
		fmt.Fprintln(env.Stdout, line)
	}
	fmt.Fprintln(env.Stdout, "broadcast:PORT   any game that broadcasts on UDP PORT")
	fmt.Fprintln(env.Stdout, "multicast:GROUP:PORT any game that multicasts to GROUP on UDP PORT")
	return nil
}

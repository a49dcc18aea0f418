// Command nodeload puts a Headscale shard under the load of thousands of
// nodes without thousands of machines: every simulated node is a bare
// Tailscale control client (tailscale.com/control/controlclient, no
// WireGuard engine) that registers with a single-use key from roomnet's
// REST API, exactly as a player's node does, and holds its map stream
// open. It measures, as p50/p99:
//
//   - join: REST join → the joiner's netmap holds every roommate, and
//     → every roommate's netmap holds the joiner ("seen");
//   - gone: REST leave or kick → no roommate's netmap holds the node;
//
// in phases: rooms filled member by member, an idle hold, churn (members
// leave and rejoin at a stated rate) and kicks, with the Headscale
// children's CPU (in cores) and RSS per phase.
//
//	roomnetd --auth-login-per-minute 100000 …      # the server under test
//	nodeload -api http://127.0.0.1:8080 -nodes 500 -room-size 4 -hold 30s -churn-rate 2 -churn-for 60s -kicks 50
//
// The accounts are registered on the first run (bcrypt on the server:
// slow) and reused by later runs with the same -prefix.
// docs/benchmarks.md has the figures and the commands behind them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/roomnet/roomnet/roomnet/node"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nodeload:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("nodeload", flag.ContinueOnError)
	var cfg Config
	fs.StringVar(&cfg.API, "api", "http://127.0.0.1:8080", "roomnetd's base URL")
	fs.IntVar(&cfg.Nodes, "nodes", 100, "nodes in all (rounded down to whole rooms)")
	fs.IntVar(&cfg.RoomSize, "room-size", 4, "members per room")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "joins or kicks in flight at once")
	fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "idle phase with every node connected")
	fs.Float64Var(&cfg.ChurnRate, "churn-rate", 1, "leave-and-rejoin operations per second in the churn phase")
	fs.DurationVar(&cfg.ChurnFor, "churn-for", 0, "length of the churn phase (0: no churn)")
	fs.IntVar(&cfg.Kicks, "kicks", 20, "kicks, each in its own room")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "longest wait for one join or removal to show")
	fs.StringVar(&cfg.Prefix, "prefix", "load", "account names start with it")
	fs.StringVar(&cfg.Password, "password", "nodeload-password-1", "the simulated accounts' password")
	pids := fs.String("pids", "", "comma-separated Headscale PIDs to measure (default: found by environment)")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	verbose := fs.Bool("v", false, "log the control clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.FieldsFunc(*pids, func(r rune) bool { return r == ',' }) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("bad -pids entry %q", f)
		}
		cfg.PIDs = append(cfg.PIDs, p)
	}
	if *verbose {
		cfg.ControlLogf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	cfg.Progress = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	node.Harden() // no log upload, no port mapper: nothing leaves the machine
	node.NoPortMapper()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, cfg)
	printReport(rep)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func printReport(rep Report) {
	fmt.Printf("%d nodes in %d rooms of %d; Headscale PIDs %v; peak RSS %.0f MB\n", rep.Nodes, rep.Rooms, rep.RoomSize, rep.PIDs, rep.PeakRSSMB)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "phase\tops\terrors\tseconds\tjoin p50\tjoin p99\tseen p50\tseen p99\tgone p50\tgone p99\tHS cores\tHS RSS MB")
	for _, p := range rep.Phases {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.0f\n", p.Name, p.Ops, p.Errors, p.Seconds,
			dash(p.P50), dash(p.P99), dash(p.SeenP50), dash(p.SeenP99), dash(p.GoneP50), dash(p.GoneP99), p.CPUCores, p.RSSMB)
	}
	w.Flush()
	for _, p := range rep.Phases {
		if p.FirstErr != "" {
			fmt.Printf("%s: first error: %s\n", p.Name, p.FirstErr)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

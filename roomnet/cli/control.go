package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/roomnet/roomnet/roomnet/node"
)

// The running session (host or join) answers other roomnet commands on
// this machine through a unix socket in the config dir, mode 0600: only
// the same user reaches it. One JSON request per connection, answered by
// JSON lines.

func controlPath(dir string) string { return filepath.Join(dir, "session.sock") }

type controlRequest struct {
	Cmd    string `json:"cmd"` // ping
	Member string `json:"member"`
	Count  int    `json:"count"`
}

// PingResult is one line of `roomnet ping --json`.
type PingResult struct {
	Member string  `json:"member"`
	IP     string  `json:"ip"`
	RTTMS  float64 `json:"rtt_ms,omitempty"`
	Direct bool    `json:"direct"`
	Path   string  `json:"path,omitempty"` // the direct endpoint or the relay
	// PeerRelay: the ping went through a roommate's peer relay, whose
	// "ip:port:vni:N" is the path.
	PeerRelay bool   `json:"peer_relay,omitempty"`
	Error     string `json:"error,omitempty"`
}

// serveControl answers requests until the returned closer is called.
func serveControl(dir string, n *node.Node, peers *peerSet) (func(), error) {
	path := controlPath(dir)
	_ = os.Remove(path) // a stale socket of a session that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go answer(c, n, peers)
		}
	}()
	return func() { ln.Close(); os.Remove(path) }, nil
}

func answer(c net.Conn, n *node.Node, peers *peerSet) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	var req controlRequest
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil || req.Cmd != "ping" {
		_ = json.NewEncoder(c).Encode(PingResult{Error: "unknown request"})
		return
	}
	enc := json.NewEncoder(c)
	ips := peers.of(req.Member)
	if len(ips) == 0 {
		_ = enc.Encode(PingResult{Member: req.Member, Error: "no such member with a node in the room"})
		return
	}
	count := min(max(req.Count, 1), 100)
	for i := range count {
		if i > 0 {
			time.Sleep(time.Second)
		}
		for _, ip := range ips {
			r := PingResult{Member: req.Member, IP: ip.String()}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			pp, err := n.PingPath(ctx, ip)
			if err != nil {
				r.Error = err.Error()
			} else {
				r.RTTMS = float64(pp.RTT.Microseconds()) / 1000
				r.Direct, r.Path = pp.Endpoint != "", pp.Relay
				switch {
				case r.Direct:
					r.Path = pp.Endpoint
				case pp.PeerRelay != "":
					r.Path, r.PeerRelay = pp.PeerRelay, true
				}
			}
			cancel()
			if enc.Encode(r) != nil {
				return
			}
		}
	}
}

func cmdPing(ctx context.Context, args []string, env Env) error {
	fs := newFlags("ping", env)
	count := fs.Int("count", 3, "pings")
	asJSON := fs.Bool("json", false, "JSON lines")
	var member string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		member, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if member == "" && fs.NArg() == 1 {
		member = fs.Arg(0)
	}
	if member == "" {
		return fail(ExitUsage, "usage: roomnet ping <member> [--count N] [--json]")
	}
	dir, err := stateDir(env)
	if err != nil {
		return err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", controlPath(dir))
	if err != nil {
		return fail(ExitError, "no room session runs on this machine (start one with roomnet host or roomnet join)")
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(controlRequest{Cmd: "ping", Member: member, Count: *count}); err != nil {
		return err
	}
	sc := bufio.NewScanner(c)
	failed := 0
	for sc.Scan() {
		var r PingResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return err
		}
		if r.Error != "" && r.IP == "" {
			// Nothing was pinged (no such member): one error, not two.
			return fail(ExitError, "%s: %s", member, r.Error)
		}
		if r.Error != "" {
			failed++
		}
		if *asJSON {
			fmt.Fprintln(env.Stdout, sc.Text())
			continue
		}
		switch {
		case r.Error != "":
			fmt.Fprintf(env.Stdout, "%s %s: %s\n", r.Member, r.IP, r.Error)
		case r.Direct:
			fmt.Fprintf(env.Stdout, "%s %s: %s direct %s\n", r.Member, r.IP, formatRTT(r.RTTMS), r.Path)
		case r.PeerRelay:
			fmt.Fprintf(env.Stdout, "%s %s: %s relayed via the peer relay %s\n", r.Member, r.IP, formatRTT(r.RTTMS), r.Path)
		case r.Path != "":
			fmt.Fprintf(env.Stdout, "%s %s: %s relayed via %s\n", r.Member, r.IP, formatRTT(r.RTTMS), r.Path)
		default:
			fmt.Fprintf(env.Stdout, "%s %s: %s relayed\n", r.Member, r.IP, formatRTT(r.RTTMS))
		}
	}
	if failed > 0 {
		return fail(ExitError, "%d of the pings to %s failed", failed, member)
	}
	return errors.Join(sc.Err(), ctx.Err())
}

package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/lan"
	"github.com/roomnet/roomnet/roomnet/node"
)

// reporter tells what a session does: lines for people, or with --json
// one JSON object per line on stdout for launchers ({"event": ...}).
type reporter struct {
	env  Env
	json bool
}

// progress is a step on the way (stderr for people).
func (r reporter) progress(event, text string, fields map[string]any) {
	r.emit(event, fields, func() { fmt.Fprintln(r.env.Stderr, text) })
}

// emit writes an event as JSON, or calls text.
func (r reporter) emit(event string, fields map[string]any, text func()) {
	if !r.json {
		text()
		return
	}
	out := map[string]any{"event": event, "time": time.Now().UTC().Format(time.RFC3339Nano)}
	for k, v := range fields {
		out[k] = v
	}
	_ = json.NewEncoder(r.env.Stdout).Encode(out) // one line each
}

// done reports how the session ended, as a last event, and passes err on:
// an error event, or a left event when the user left from elsewhere.
func (r reporter) done(err error) error {
	if err == nil || !r.json {
		return err
	}
	if code := exitCode(err); code != ExitOK {
		r.emit("error", map[string]any{"code": code, "message": message(err)}, func() {})
	} else {
		r.emit("left", map[string]any{"message": message(err)}, func() {})
	}
	return err
}

func cmdHost(ctx context.Context, args []string, env Env) error {
	f, c, s, r, err := createRoom(ctx, "host", args, env)
	if err != nil {
		return err
	}
	rep := reporter{env, *f.asJSON}
	rep.emit("room", map[string]any{"room": r.Room}, func() { printInvite(env, r.Room) })
	return rep.done(session(ctx, rep, c, s, r.Room, r.Join, sessionOpts{host: true, bind: "127.0.0.1", prof: f.prof, node: f.node, wait: 30 * time.Second}))
}

func cmdJoin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("join", env)
	password := fs.String("password", "", "room password (joining by room id; an invite code needs none)")
	bind := fs.String("bind", "127.0.0.1", "local address the host's game ports are forwarded on")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the host's node to come online")
	asJSON := fs.Bool("json", false, "one JSON event per line on stdout, for launchers")
	lanf := addLANFlags(fs)
	nodef := addNodeFlags(fs)
	// Flags may follow the target: roomnet join CODE --password x.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := nodef.check(); err != nil {
		return err
	}
	if target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	}
	if target == "" {
		return fail(ExitUsage, "usage: roomnet join <room id | invite code | roomnet://join/CODE>")
	}
	roomID, invite, err := parseTarget(target)
	if err != nil {
		return err
	}
	if _, err := netip.ParseAddr(*bind); err != nil {
		return fail(ExitUsage, "--bind: want an IP address, got %q", *bind)
	}
	if *wait <= 0 {
		return fail(ExitUsage, "--wait: want a positive duration, got %v", *wait)
	}
	c, s, err := client(env)
	if err != nil {
		return err
	}
	rep := reporter{env, *asJSON}
	if invite != "" && *password != "" {
		fmt.Fprintln(env.Stderr, "an invite code stands in for the room password: --password is not used")
	}
	rep.progress("contacting", "contacting server…", nil)
	grant, err := joinOrRenew(ctx, c, roomID, invite, *password)
	if err != nil {
		var ae *roomnet.Error
		if errors.As(err, &ae) && ae.Code == roomnet.CodeWrongPassword && *password == "" {
			err = fail(ExitWrongPassword, "this room needs a password: roomnet join %s --password …", target)
		}
		return rep.done(err)
	}
	room, err := c.Room(ctx, grant.RoomID)
	if err != nil {
		return rep.done(err)
	}
	// The host joining their own room (the web lobby's "Create a room"
	// hands over roomnet join CODE) hosts it: the room's game ports are
	// served here, and nobody is waited for.
	host := s.Username != "" && strings.EqualFold(room.Host, s.Username)
	prof, err := lanf.profile(room.Game)
	if err != nil {
		if !host {
			leaveQuietly(c, room.ID)
		}
		return rep.done(err)
	}
	if prof != nil && !bindSet(fs) && !host {
		// Announcements appear from this machine's LAN address: the game
		// connects there, not to 127.0.0.1.
		*bind = "0.0.0.0"
	}
	rep.emit("room", map[string]any{"room": room}, func() {
		if host {
			fmt.Fprintln(env.Stdout, "you host this room")
			printInvite(env, room)
		}
	})
	return rep.done(session(ctx, rep, c, s, room, grant, sessionOpts{host: host, bind: *bind, prof: prof, node: nodef, wait: *wait, askHost: !host && *lanf.name != "off", bindSet: bindSet(fs)}))
}

// session brings the node up, forwards game ports and shows the room until
// the user stops it (then it leaves, so the node is removed at once) or
// the server cuts the node off.
// sessionOpts say how a session runs.
type sessionOpts struct {
	host bool
	bind string       // player side: where the host's ports are forwarded
	prof *lan.Profile // LAN discovery to bridge, if any
	node nodeFlags
	wait time.Duration // player side: how long the host's node is waited for
	// askHost: without a profile here, a player asks the host's bridge
	// which profile it bridges.
	askHost bool
	bindSet bool // --bind was given
}

// nodeFlags choose the node: userspace (default) or the machine's
// Tailscale client.
type nodeFlags struct {
	tun        *bool
	socket     *string
	noPortMaps *bool
	relayPort  *uint
}

func addNodeFlags(fs *flag.FlagSet) nodeFlags {
	return nodeFlags{
		tun:        fs.Bool("tun", false, "use this machine's Tailscale client (tailscaled, with a TUN device) instead of a userspace node: games reach room addresses directly"),
		socket:     fs.String("tailscale-socket", "", "tailscaled's LocalAPI socket for --tun (default: the platform's)"),
		noPortMaps: fs.Bool("no-port-mapping", false, "do not ask the router for a port (UPnP, NAT-PMP, PCP); behind a hard NAT the room is then relayed"),
		relayPort:  fs.Uint("relay-port", 0, "serve the room as a peer relay on this UDP port (0: off): roommates who cannot reach each other directly relay through this machine instead of the server; it needs a public address or a port forward to this machine"),
	}
}

// check refuses flags that do not go together, before anything happens.
func (f nodeFlags) check() error {
	if *f.relayPort > 65535 {
		return fail(ExitUsage, "--relay-port: want a UDP port (1-65535), got %d", *f.relayPort)
	}
	if *f.relayPort != 0 && *f.tun {
		return fail(ExitUsage, "--relay-port works with the userspace node only: with --tun, turn the relay on in tailscaled (tailscale set --relay-server-port)")
	}
	return nil
}

func session(ctx context.Context, rep reporter, c *roomnet.Client, s state, room roomnet.Room, grant roomnet.JoinGrant, o sessionOpts) error {
	env := rep.env
	rep.progress("key_issued", "key issued; bringing the node up…", nil)
	s.Room = room.ID
	_ = saveState(env, s)
	forget := func() {
		if cur, err := loadState(env); err == nil && cur.Room == room.ID {
			cur.Room = ""
			_ = saveState(env, cur)
		}
	}
	// leave leaves the room through the API. When that fails the room
	// stays in the config, so that roomnet leave can finish the job.
	leave := func() error {
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := c.Leave(lctx, room.ID)
		var ae *roomnet.Error
		if err != nil && !(errors.As(err, &ae) && (ae.Code == roomnet.CodeNotMember || ae.Code == roomnet.CodeRoomClosed || ae.Code == roomnet.CodeNotFound)) {
			return leaveFailed(room.ID, err)
		}
		forget()
		return nil
	}
	dir, err := stateDir(env)
	if err != nil {
		return errors.Join(err, leave())
	}
	// The room moves when its Headscale shard is lost: a fresh key from
	// the room's new shard, a fresh node (a new state dir) and the room
	// served again, without the user doing anything.
	seen := map[string]bool{} // members shown in the live view, across moves
	for gen := 0; ; gen++ {
		err := runNode(ctx, rep, c, s, room, grant, o, dir, gen, seen, leave, forget)
		if !errors.Is(err, errRoomMoved) {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		g, gerr := c.RenewKey(rctx, room.ID)
		var r roomnet.Room
		if gerr == nil {
			r, gerr = c.Room(rctx, room.ID)
		}
		cancel()
		if gerr != nil {
			if ctx.Err() != nil {
				return leave()
			}
			var ae *roomnet.Error
			if errors.As(gerr, &ae) { // kicked, closed or left meanwhile
				err := cutOff(c, room.ID)
				if exitCode(err) != ExitNodeFailed {
					forget()
				}
				return err
			}
			return errors.Join(fail(ExitNodeFailed, "the room moved to another server and no key came from it: %v", gerr), leave())
		}
		room.Shard, grant = r.Shard, g
		rep.emit("room_moved", map[string]any{"room_id": room.ID, "login_server": g.LoginServer}, func() {
			fmt.Fprintf(env.Stdout, "the room moved to another server (%s): reconnecting…\n", g.LoginServer)
		})
	}
}

// errRoomMoved ends one node of a session: the room lives on another
// shard now.
var errRoomMoved = errors.New("the room moved to another shard")

// runNode runs the session's gen-th node (the first is 0; one more each
// time the room moves) until the session ends or the room moves
// (errRoomMoved).
func runNode(ctx context.Context, rep reporter, c *roomnet.Client, s state, room roomnet.Room, grant roomnet.JoinGrant, o sessionOpts, dir string, gen int, seen map[string]bool, leave func() error, forget func()) error {
	env := rep.env
	host, bind, prof := o.host, o.bind, o.prof
	nodeDir := filepath.Join(dir, "nodes", room.ID)
	if gen > 0 {
		nodeDir += fmt.Sprintf(".%d", gen)
	}
	upCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	var err error
	var n *node.Node
	if *o.node.tun {
		n, err = node.Attach(upCtx, *o.node.socket, grant, strings.ToLower(s.Username))
	} else {
		opts := node.Options{
			Dir:       nodeDir,
			Hostname:  strings.ToLower(s.Username),
			Grant:     grant,
			RelayPort: uint16(*o.node.relayPort), // checked: ≤ 65535
		}
		if *o.node.noPortMaps {
			node.NoPortMapper()
		}
		if env.Getenv("ROOMNET_NODE_LOG") == "1" { // the WireGuard node's own log, for troubleshooting
			opts.Logf = func(format string, a ...any) { fmt.Fprintf(env.Stderr, "node: "+format+"\n", a...) }
		}
		n, err = node.Start(upCtx, opts)
	}
	cancel()
	if err != nil {
		lerr := leave()
		if ctx.Err() != nil {
			return lerr
		}
		return errors.Join(fail(ExitNodeFailed, "the node did not come up (key expired or server unreachable): %v", err), lerr)
	}
	defer func() {
		n.Close()
		if !n.Attached() {
			os.RemoveAll(nodeDir)
		}
	}()
	rep.emit("node_up", map[string]any{"ip": n.IP().String(), "room_id": room.ID}, func() {
		fmt.Fprintf(env.Stdout, "node up: %s in room %s\n", n.IP(), room.ID)
	})

	fw := &lan.Forwarder{Room: n, Bind: bind, Logf: func(format string, a ...any) { fmt.Fprintf(env.Stderr, format+"\n", a...) }}
	var hostIP netip.Addr // player side: the host's room address
	from := "here"        // where the profile bridged comes from
	if host {
		if !n.Attached() { // with --tun the system routes the room to the game
			if err := fw.ServeHost(ctx, room.Ports); err != nil {
				return errors.Join(fail(ExitError, "%v", err), leave())
			}
		}
	} else {
		var err error
		hostIP, err = waitHost(ctx, rep, c, room.ID, o.wait)
		if err != nil {
			if ctx.Err() != nil {
				return leave()
			}
			return errors.Join(err, leave())
		}
		wctx, cancel := context.WithTimeout(ctx, o.wait)
		err = n.WaitReachable(wctx, hostIP)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return leave()
			}
			return errors.Join(fail(ExitNodeFailed, "the host's node did not answer: %v", err), leave())
		}
		rep.emit("host_reached", map[string]any{"ip": hostIP.String()}, func() { fmt.Fprintf(env.Stdout, "host reached at %s\n", hostIP) })
		if prof == nil && o.askHost {
			// The host may bridge a game this machine has no profile for
			// (a --profiles file of theirs): ask the host's bridge.
			if p, err := askHostProfile(ctx, n, hostIP); err == nil {
				prof, from = &p, "host"
				if !o.bindSet {
					fw.Bind = "0.0.0.0" // announcements appear from the LAN address
				}
			} else {
				rep.progress("lan_none", fmt.Sprintf("no LAN discovery: %v (roomnet profiles; --lan)", err), map[string]any{"message": err.Error()})
			}
		}
		if !n.Attached() { // with --tun the game reaches the host's room address itself
			if err := fw.ServePlayer(ctx, hostIP, room.Ports); err != nil {
				return errors.Join(fail(ExitError, "%v", err), leave())
			}
		}
	}
	defer fw.Close()
	peers := &peerSet{self: n.IP()}
	if prof != nil {
		// Without discovery the room still works (direct connect): a
		// bridge that cannot start is said, not fatal.
		var disc []string
		for _, d := range prof.Discovery {
			disc = append(disc, d.String())
		}
		if br, err := startBridge(n, prof, peers, fw, env); err != nil {
			rep.progress("lan_bridge_failed", fmt.Sprintf("LAN discovery for %s is off: %v", prof.Name, err), map[string]any{"profile": prof.Name, "message": err.Error()})
		} else {
			defer br.Close()
			text := fmt.Sprintf("bridging LAN discovery for %s (%s)", prof.Name, strings.Join(disc, ", "))
			if from == "host" {
				text += ", the host's profile"
			}
			rep.progress("lan_bridge", text, map[string]any{"profile": prof.Name, "discovery": disc, "from": from})
		}
	}
	if stop, err := serveControl(dir, n, peers); err != nil {
		fmt.Fprintf(env.Stderr, "roomnet ping will not reach this session: %v\n", err)
	} else {
		defer stop()
	}
	return watch(ctx, rep, c, n, room, seen, leave, forget, peers)
}

// leaveFailed says that leaving did not go through and what to do.
func leaveFailed(roomID string, err error) error {
	code := exitCode(err)
	if code == ExitOK {
		code = ExitError
	}
	return fail(code, "leaving room %s failed (%s): it stays listed here; run roomnet leave once that is fixed", roomID, message(err))
}

// waitHost returns the room address of the host's node, saying what it
// waits for when the host is not online yet.
func waitHost(ctx context.Context, rep reporter, c *roomnet.Client, roomID string, wait time.Duration) (netip.Addr, error) {
	deadline := time.Now().Add(wait)
	told := false
	for {
		members, err := c.Members(ctx, roomID)
		if err != nil {
			return netip.Addr{}, err
		}
		host := ""
		for _, m := range members {
			if !m.Host {
				continue
			}
			host = m.Username
			for _, nd := range m.Nodes {
				for _, ip := range nd.IPs {
					if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
						return a, nil
					}
				}
			}
		}
		if !told {
			told = true
			rep.progress("waiting_host", fmt.Sprintf("waiting for the host %s to come online (their roomnet host or join runs the room's node)…", host), map[string]any{"host": host})
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fail(ExitNodeFailed, "the host %s did not come online within %v: the room was made without a running session (roomnet create, or the web lobby); ask them to run roomnet join on it, then join again", host, wait)
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// watch prints members joining and leaving, and how this node reaches
// each (direct or relayed, round trip), until ctx ends (then it leaves)
// or the node is cut off (then it says why).
func watch(ctx context.Context, rep reporter, c *roomnet.Client, n *node.Node, room roomnet.Room, seen map[string]bool, leave func() error, forget func(), peers *peerSet) error {
	roomID := room.ID
	// moved reports whether the room lives on another shard than this
	// node's (a server that does not name shards never says so).
	moved := func() bool {
		if room.Shard == "" {
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := c.Room(rctx, roomID)
		return err == nil && r.Shard != "" && r.Shard != room.Shard
	}
	paths := map[string]string{} // member → last printed path
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for tick := 0; ; tick++ {
		if members, err := c.Members(ctx, roomID); err == nil {
			now := map[string]bool{}
			var names []string
			for _, m := range members {
				now[m.Username] = true
				if !seen[m.Username] {
					names = append(names, m.Username)
				}
			}
			sort.Strings(names)
			for _, name := range names {
				rep.emit("member_joined", map[string]any{"member": name}, func() { fmt.Fprintf(rep.env.Stdout, "+ %s\n", name) })
			}
			for name := range seen {
				if !now[name] {
					rep.emit("member_left", map[string]any{"member": name}, func() { fmt.Fprintf(rep.env.Stdout, "- %s\n", name) })
					delete(paths, name)
				}
			}
			clear(seen) // the caller's map: a moved room's next node goes on from here
			for name := range now {
				seen[name] = true
			}
			peers.set(members)
			if tick%5 == 0 {
				links := printPaths(ctx, rep, n, members, paths)
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_ = c.ReportPaths(rctx, roomID, links) // telemetry for the admin panel; best effort
				cancel()
			}
		}
		if tick%2 == 1 && moved() {
			return errRoomMoved
		}
		if st, err := n.State(ctx); err == nil && st != "Running" {
			if moved() {
				return errRoomMoved
			}
			err := cutOff(c, roomID)
			if exitCode(err) != ExitNodeFailed {
				forget() // kicked, closed or left: the room is gone for this user
			}
			return err
		}
		select {
		case <-ctx.Done():
			rep.progress("leaving", "leaving…", nil)
			return leave()
		case <-t.C:
		}
	}
}

// printPaths prints, for members whose path changed, whether this node
// reaches them directly or through a relay, and the round trip; it
// returns every peer's link, measured now, for the control plane.
func printPaths(ctx context.Context, rep reporter, n *node.Node, members []roomnet.Member, printed map[string]string) []roomnet.Link {
	peers, err := n.Peers(ctx)
	if err != nil {
		return nil
	}
	var links []roomnet.Link
	byIP := map[string]node.Peer{}
	for _, p := range peers {
		for _, ip := range p.IPs {
			byIP[ip.String()] = p
		}
	}
	for _, m := range members {
		for _, nd := range m.Nodes {
			for _, ip := range nd.IPs {
				p, ok := byIP[ip]
				if !ok || p.Expired {
					continue
				}
				link := roomnet.Link{Peer: m.Username, IP: ip, Direct: p.Direct, Addr: p.CurAddr, Relay: p.Relay}
				peerRelay := p.PeerRelay // the status's, else the ping's
				rtt, rttMS := "", -1.0
				if a, err := netip.ParseAddr(ip); err == nil {
					pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					if pp, err := n.PingPath(pctx, a); err == nil {
						rttMS = float64(pp.RTT.Microseconds()) / 1000
						rtt = ", " + formatRTT(rttMS)
						link.RTTMS = rttMS
						if link.Relay == "" && pp.Endpoint == "" && pp.PeerRelay == "" {
							link.Relay = pp.Relay // the netmap may not name the peer's relay yet
						}
						peerRelay = cmp.Or(peerRelay, pp.PeerRelay)
					}
					cancel()
				}
				if !p.Direct && peerRelay != "" {
					link.PeerRelay, link.Addr, link.Relay = true, peerRelay, ""
				}
				path := "relayed"
				switch {
				case p.Direct:
					path = "direct " + p.CurAddr
				case peerRelay != "":
					path += " via the peer relay " + peerRelay
				case link.Relay != "":
					path += " via " + link.Relay
				}
				links = append(links, link)
				if printed[m.Username] == path {
					continue
				}
				printed[m.Username] = path
				fields := map[string]any{"member": m.Username, "ip": ip, "direct": p.Direct}
				switch {
				case p.Direct:
					fields["addr"] = p.CurAddr
				case peerRelay != "":
					fields["peer_relay"] = peerRelay
				case link.Relay != "":
					fields["relay"] = link.Relay
				}
				if rttMS >= 0 {
					fields["rtt_ms"] = rttMS
				}
				rep.emit("path", fields, func() { fmt.Fprintf(rep.env.Stdout, "  %s %s %s%s\n", m.Username, ip, path, rtt) })
			}
		}
	}
	return links
}

// formatRTT shows a round trip with the precision it has: "0.42 ms",
// "3.1 ms", "120 ms".
func formatRTT(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// cutOff explains why the server removed this node.
func cutOff(c *roomnet.Client, roomID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.RenewKey(ctx, roomID)
	var ae *roomnet.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case roomnet.CodeKicked:
			return fail(ExitKicked, "you were kicked from the room")
		case roomnet.CodeRoomClosed:
			return fail(ExitRoomClosed, "the room was closed")
		case roomnet.CodeNotMember:
			return fail(ExitOK, "you left the room")
		}
	}
	return fail(ExitNodeFailed, "the node was disconnected from the room")
}

// peerSet is the room addresses of the other members, for the bridge
// and ping.
type peerSet struct {
	self   netip.Addr
	mu     sync.Mutex
	addrs  []netip.Addr
	byName map[string][]netip.Addr
}

func (p *peerSet) set(members []roomnet.Member) {
	var out []netip.Addr
	byName := map[string][]netip.Addr{}
	for _, m := range members {
		for _, nd := range m.Nodes {
			for _, ip := range nd.IPs {
				if a, err := netip.ParseAddr(ip); err == nil && a.Is4() && a != p.self {
					out = append(out, a)
					byName[m.Username] = append(byName[m.Username], a)
				}
			}
		}
	}
	p.mu.Lock()
	p.addrs, p.byName = out, byName
	p.mu.Unlock()
}

func (p *peerSet) of(member string) []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byName[member]
}

func (p *peerSet) get() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs
}

// lanFlags choose the game profile whose LAN discovery is bridged.
type lanFlags struct {
	name, file *string
}

func addLANFlags(fs *flag.FlagSet) lanFlags {
	return lanFlags{
		name: fs.String("lan", "", `game profile whose LAN discovery is bridged (default: the room's game when a profile has its name; "off": none; "broadcast:PORT" for any game that broadcasts on PORT)`),
		file: fs.String("profiles", "", "a JSON file of more game profiles"),
	}
}

// profile returns the profile to bridge for a room's game, or nil.
func (f lanFlags) profile(game string) (*lan.Profile, error) {
	cat := lan.Builtin()
	if *f.file != "" {
		if err := cat.Extend(*f.file); err != nil {
			return nil, fail(ExitUsage, "%v", err)
		}
	}
	name := *f.name
	switch {
	case name == "off":
		return nil, nil
	case name == "":
		if !cat.Has(game) {
			return nil, nil
		}
		name = game
	}
	p, err := cat.Lookup(name)
	if err != nil {
		return nil, fail(ExitUsage, "--lan: %v", err)
	}
	return &p, nil
}

func bindSet(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "bind" })
	return set
}

func leaveQuietly(c *roomnet.Client, roomID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.Leave(ctx, roomID)
}

// askHostProfile asks the host's bridge which profile it bridges.
func askHostProfile(ctx context.Context, n *node.Node, host netip.Addr) (lan.Profile, error) {
	pc, err := bridgeSocket(n)
	if err != nil {
		return lan.Profile{}, err
	}
	defer pc.Close()
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p, err := lan.AskProfile(actx, pc, host, lan.Builtin())
	if errors.Is(err, context.DeadlineExceeded) {
		return p, errors.New("the host bridges none")
	}
	return p, err
}

// startBridge runs the LAN bridge of a profile beside the node.
func startBridge(n *node.Node, prof *lan.Profile, peers *peerSet, fw *lan.Forwarder, env Env) (*lan.Bridge, error) {
	pc, err := bridgeSocket(n)
	if err != nil {
		return nil, err
	}
	br, err := lan.NewBridge(lan.BridgeOptions{Profile: *prof, Room: pc, Peers: peers.get, GameSocket: fw.UDPSocket, Routed: n.Attached(),
		Logf: func(format string, a ...any) { fmt.Fprintf(env.Stderr, format+"\n", a...) }})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("%v (is the game's discovery port taken by a program that does not share it?)", err)
	}
	return br, nil
}

// bridgeSocket opens the LAN bridge's socket on the room network: on the
// userspace node, or with --tun on the system's room address.
func bridgeSocket(n *node.Node) (net.PacketConn, error) {
	if !n.Attached() {
		return n.ListenPacket(lan.BridgePort)
	}
	pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(n.IP(), lan.BridgePort).String())
	if err != nil {
		return nil, fmt.Errorf("%v (with --tun the room address must be on a system interface; tailscaled in userspace-networking mode has none)", err)
	}
	return pc, nil
}

// joinOrRenew joins a room, or, for someone who is a member already (the
// web lobby's "join room" joined through the API before handing over,
// or a launcher retried), mints a fresh key for the membership.
func joinOrRenew(ctx context.Context, c *roomnet.Client, roomID, invite, password string) (roomnet.JoinGrant, error) {
	var grant roomnet.JoinGrant
	var err error
	if invite != "" {
		grant, err = c.JoinInvite(ctx, invite)
	} else {
		grant, err = c.Join(ctx, roomID, password)
	}
	var ae *roomnet.Error
	if !errors.As(err, &ae) {
		return grant, err
	}
	switch ae.Code {
	case roomnet.CodeAlreadyMember:
	case roomnet.CodeForbidden, roomnet.CodeWrongPassword:
		// A private or locked room refuses a join by id before it sees
		// a member (its host, say): a member still gets a key.
		if invite == "" {
			if g, rerr := c.RenewKey(ctx, roomID); rerr == nil {
				return g, nil
			}
		}
		return grant, err
	default:
		return grant, err
	}
	if invite != "" {
		room, err := c.Invite(ctx, invite)
		if err != nil {
			return roomnet.JoinGrant{}, err
		}
		roomID = room.ID
	}
	return c.RenewKey(ctx, roomID)
}

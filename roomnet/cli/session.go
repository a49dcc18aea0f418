package cli

import (
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

// done reports how the session ended, as a last event, and passes err on.
func (r reporter) done(err error) error {
	if err != nil && r.json {
		r.emit("error", map[string]any{"code": exitCode(err), "message": message(err)}, func() {})
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
	return rep.done(session(ctx, rep, c, s, r.Room, r.Join, sessionOpts{host: true, bind: "127.0.0.1", prof: f.prof, node: f.node}))
}

func cmdJoin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("join", env)
	password := fs.String("password", "", "room password")
	bind := fs.String("bind", "127.0.0.1", "local address the host's game ports are forwarded on")
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
	c, s, err := client(env)
	if err != nil {
		return err
	}
	rep := reporter{env, *asJSON}
	rep.progress("contacting", "contacting server…", nil)
	grant, err := joinOrRenew(ctx, c, roomID, invite, *password)
	if err != nil {
		return rep.done(err)
	}
	room, err := c.Room(ctx, grant.RoomID)
	if err != nil {
		return rep.done(err)
	}
	prof, err := lanf.profile(room.Game)
	if err != nil {
		leaveQuietly(c, room.ID)
		return rep.done(err)
	}
	if prof != nil && !bindSet(fs) {
		// Announcements appear from this machine's LAN address: the game
		// connects there, not to 127.0.0.1.
		*bind = "0.0.0.0"
	}
	rep.emit("room", map[string]any{"room": room}, func() {})
	return rep.done(session(ctx, rep, c, s, room, grant, sessionOpts{bind: *bind, prof: prof, node: nodef}))
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
}

// nodeFlags choose the node: userspace (default) or the machine's
// Tailscale client.
type nodeFlags struct {
	tun    *bool
	socket *string
}

func addNodeFlags(fs *flag.FlagSet) nodeFlags {
	return nodeFlags{
		tun:    fs.Bool("tun", false, "use this machine's Tailscale client (tailscaled, with a TUN device) instead of a userspace node: games reach room addresses directly"),
		socket: fs.String("tailscale-socket", "", "tailscaled's LocalAPI socket for --tun (default: the platform's)"),
	}
}

func session(ctx context.Context, rep reporter, c *roomnet.Client, s state, room roomnet.Room, grant roomnet.JoinGrant, o sessionOpts) error {
	env := rep.env
	host, bind, prof := o.host, o.bind, o.prof
	rep.progress("key_issued", "key issued; bringing the node up…", nil)
	s.Room = room.ID
	_ = saveState(env, s)
	leave := func() {
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Leave(lctx, room.ID)
		s.Room = ""
		_ = saveState(env, s)
	}
	dir, err := stateDir(env)
	if err != nil {
		leave()
		return err
	}
	upCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	var n *node.Node
	if *o.node.tun {
		n, err = node.Attach(upCtx, *o.node.socket, grant, strings.ToLower(s.Username))
	} else {
		n, err = node.Start(upCtx, node.Options{
			Dir:      filepath.Join(dir, "nodes", room.ID),
			Hostname: strings.ToLower(s.Username),
			Grant:    grant,
		})
	}
	cancel()
	if err != nil {
		leave()
		if ctx.Err() != nil {
			return nil
		}
		return fail(ExitNodeFailed, "the node did not come up (key expired or server unreachable): %v", err)
	}
	defer func() {
		n.Close()
		if !n.Attached() {
			os.RemoveAll(filepath.Join(dir, "nodes", room.ID))
		}
	}()
	rep.emit("node_up", map[string]any{"ip": n.IP().String(), "room_id": room.ID}, func() {
		fmt.Fprintf(env.Stdout, "node up: %s in room %s\n", n.IP(), room.ID)
	})

	fw := &lan.Forwarder{Room: n, Bind: bind, Logf: func(format string, a ...any) { fmt.Fprintf(env.Stderr, format+"\n", a...) }}
	if host {
		if !n.Attached() { // with --tun the system routes the room to the game
			if err := fw.ServeHost(ctx, room.Ports); err != nil {
				leave()
				return fail(ExitError, "%v", err)
			}
		}
	} else {
		hostIP, err := waitHost(ctx, c, room.ID)
		if err != nil {
			leave()
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = n.WaitReachable(wctx, hostIP)
		cancel()
		if err != nil {
			leave()
			return fail(ExitNodeFailed, "the host's node did not answer: %v", err)
		}
		rep.emit("host_reached", map[string]any{"ip": hostIP.String()}, func() { fmt.Fprintf(env.Stdout, "host reached at %s\n", hostIP) })
		if !n.Attached() { // with --tun the game reaches the host's room address itself
			if err := fw.ServePlayer(ctx, hostIP, room.Ports); err != nil {
				leave()
				return fail(ExitError, "%v", err)
			}
		}
	}
	defer fw.Close()
	peers := &peerSet{self: n.IP()}
	if prof != nil {
		pc, err := bridgeSocket(n)
		if err != nil {
			leave()
			return fail(ExitError, "LAN discovery: %v", err)
		}
		br, err := lan.NewBridge(lan.BridgeOptions{Profile: *prof, Room: pc, Peers: peers.get,
			Logf: func(format string, a ...any) { fmt.Fprintf(env.Stderr, format+"\n", a...) }})
		if err != nil {
			leave()
			return fail(ExitError, "LAN discovery for %s: %v (is the game's discovery port taken by a program that does not share it?)", prof.Name, err)
		}
		defer br.Close()
		rep.progress("lan_bridge", "bridging LAN discovery for "+prof.Name, map[string]any{"profile": prof.Name})
	}
	if stop, err := serveControl(dir, n, peers); err != nil {
		fmt.Fprintf(env.Stderr, "roomnet ping will not reach this session: %v\n", err)
	} else {
		defer stop()
	}
	return watch(ctx, rep, c, n, room.ID, leave, peers)
}

// waitHost returns the room address of the host's node.
func waitHost(ctx context.Context, c *roomnet.Client, roomID string) (netip.Addr, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		members, err := c.Members(ctx, roomID)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, m := range members {
			if !m.Host {
				continue
			}
			for _, nd := range m.Nodes {
				for _, ip := range nd.IPs {
					if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
						return a, nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fail(ExitNodeFailed, "the host has no node in the room")
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
func watch(ctx context.Context, rep reporter, c *roomnet.Client, n *node.Node, roomID string, leave func(), peers *peerSet) error {
	seen := map[string]bool{}
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
			seen = now
			peers.set(members)
			if tick%5 == 0 {
				links := printPaths(ctx, rep, n, members, paths)
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_ = c.ReportPaths(rctx, roomID, links) // telemetry for the admin panel; best effort
				cancel()
			}
		}
		if st, err := n.State(ctx); err == nil && st != "Running" {
			return cutOff(c, roomID)
		}
		select {
		case <-ctx.Done():
			rep.progress("leaving", "leaving…", nil)
			leave()
			return nil
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
				path := "relayed via " + p.Relay
				if p.Direct {
					path = "direct " + p.CurAddr
				}
				rtt, rttMS := "", int64(-1)
				link := roomnet.Link{Peer: m.Username, IP: ip, Direct: p.Direct, Addr: p.CurAddr, Relay: p.Relay}
				if a, err := netip.ParseAddr(ip); err == nil {
					pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					if d, err := n.Ping(pctx, a); err == nil {
						rtt, rttMS = fmt.Sprintf(", %d ms", d.Milliseconds()), d.Milliseconds()
						link.RTTMS = float64(d.Microseconds()) / 1000
					}
					cancel()
				}
				links = append(links, link)
				if printed[m.Username] == path {
					continue
				}
				printed[m.Username] = path
				fields := map[string]any{"member": m.Username, "ip": ip, "direct": p.Direct, "relay": p.Relay, "addr": p.CurAddr}
				if rttMS >= 0 {
					fields["rtt_ms"] = rttMS
				}
				rep.emit("path", fields, func() { fmt.Fprintf(rep.env.Stdout, "  %s %s %s%s\n", m.Username, ip, path, rtt) })
			}
		}
	}
	return links
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
		if _, known := cat[game]; !known {
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
	if !errors.As(err, &ae) || ae.Code != roomnet.CodeAlreadyMember {
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

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/lan"
)

func cmdRooms(ctx context.Context, args []string, env Env) error {
	fs := newFlags("rooms", env)
	game := fs.String("game", "", "only rooms of this game")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, _, err := client(env)
	if err != nil {
		return err
	}
	rooms, err := c.Rooms(ctx, *game)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, roomnet.RoomList{Rooms: rooms})
	}
	if len(rooms) == 0 {
		fmt.Fprintln(env.Stdout, "no public rooms")
	}
	for _, r := range rooms {
		lock := ""
		if r.HasPassword {
			lock = " (password)"
		}
		fmt.Fprintf(env.Stdout, "%s  %-24s %-12s %d/%d  host %s%s\n", r.ID, r.Name, r.Game, r.Members, r.MaxPlayers, r.Host, lock)
	}
	return nil
}

type portList []string

func (p *portList) String() string     { return strings.Join(*p, ",") }
func (p *portList) Set(v string) error { *p = append(*p, v); return nil }

type createFlags struct {
	name, game, password *string
	lan                  lanFlags
	node                 nodeFlags
	prof                 *lan.Profile // resolved by createRoom
	max                  *int
	private, asJSON      *bool
	ports                portList
}

func addCreateFlags(fs *flag.FlagSet) *createFlags {
	f := &createFlags{
		name:     fs.String("name", "", "room name"),
		game:     fs.String("game", "", "game"),
		password: fs.String("password", "", "room password"),
		max:      fs.Int("max", 8, "max players"),
		private:  fs.Bool("private", false, "not listed; joined by invite only"),
		asJSON:   fs.Bool("json", false, "JSON output"),
	}
	fs.Var(&f.ports, "port", "a game port players forward to the host, e.g. 27015/udp (repeatable; default: the game profile's)")
	f.lan = addLANFlags(fs)
	f.node = addNodeFlags(fs)
	return f
}

func (f *createFlags) request() (roomnet.CreateRoom, error) {
	if *f.name == "" {
		*f.name = *f.game + " room"
		if *f.game == "" {
			return roomnet.CreateRoom{}, fail(ExitUsage, "--name or --game is required")
		}
	}
	return roomnet.CreateRoom{Name: *f.name, Game: *f.game, MaxPlayers: *f.max, Public: !*f.private, Password: *f.password, Ports: f.ports}, nil
}

// createRoom parses the create flags and creates the room.
func createRoom(ctx context.Context, name string, args []string, env Env) (*createFlags, *roomnet.Client, state, roomnet.CreateRoomResponse, error) {
	fs := newFlags(name, env)
	f := addCreateFlags(fs)
	var r roomnet.CreateRoomResponse
	if err := parse(fs, args); err != nil {
		return f, nil, state{}, r, err
	}
	req, err := f.request()
	if err != nil {
		return f, nil, state{}, r, err
	}
	if err := f.node.check(); err != nil {
		return f, nil, state{}, r, err
	}
	// A bad --lan or --profiles fails before any room exists.
	if f.prof, err = f.lan.profile(*f.game); err != nil {
		return f, nil, state{}, r, err
	}
	if len(req.Ports) == 0 && f.prof != nil {
		req.Ports = f.prof.Ports // the game's profile knows its ports
	}
	c, s, err := client(env)
	if err != nil {
		return f, nil, s, r, err
	}
	fmt.Fprintln(env.Stderr, "contacting server…")
	r, err = c.CreateRoom(ctx, req)
	return f, c, s, r, err
}

func cmdCreate(ctx context.Context, args []string, env Env) error {
	f, _, _, r, err := createRoom(ctx, "create", args, env)
	if err != nil {
		return err
	}
	if *f.asJSON {
		return printJSON(env.Stdout, r.Room)
	}
	printInvite(env, r.Room)
	return nil
}

func printInvite(env Env, r roomnet.Room) {
	fmt.Fprintf(env.Stdout, "room %s %q\ninvite code: %s\nlink: %s\nplayers join with: roomnet join %s\n", r.ID, r.Name, r.InviteCode, r.InviteLink, r.InviteCode)
}

// roomTarget returns a signed-in client and the room a command is about.
func roomTarget(env Env, args []string) (*roomnet.Client, state, string, error) {
	c, s, err := client(env)
	if err != nil {
		return nil, s, "", err
	}
	id, err := currentRoom(args, s)
	return c, s, id, err
}

// currentRoom is the room given as the only argument, or the one this
// machine is in.
func currentRoom(args []string, s state) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	if s.Room == "" {
		return "", fail(ExitUsage, "not in a room here; name one")
	}
	return s.Room, nil
}

// StatusOutput is what status --json prints.
type StatusOutput struct {
	Room    roomnet.Room     `json:"room"`
	Members []roomnet.Member `json:"members"`
}

func cmdStatus(ctx context.Context, args []string, env Env) error {
	fs := newFlags("status", env)
	asJSON := fs.Bool("json", false, "JSON output")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, s, id, err := roomTarget(env, fs.Args())
	if err != nil {
		return err
	}
	room, err := c.Room(ctx, id)
	if err != nil {
		return gone(ctx, env, c, s, id, err)
	}
	if room.ClosedAt != nil {
		return gone(ctx, env, c, s, id, &roomnet.Error{Code: roomnet.CodeRoomClosed})
	}
	members, err := c.Members(ctx, id)
	if err != nil {
		return gone(ctx, env, c, s, id, err)
	}
	if id == s.Room && !slices.ContainsFunc(members, func(m roomnet.Member) bool { return strings.EqualFold(m.Username, s.Username) }) {
		return gone(ctx, env, c, s, id, nil) // an admin sees members of rooms they are not in
	}
	if *asJSON {
		return printJSON(env.Stdout, StatusOutput{Room: room, Members: members})
	}
	fmt.Fprintf(env.Stdout, "room %s %q (%s) %d/%d\n", room.ID, room.Name, room.Game, room.Members, room.MaxPlayers)
	for _, m := range members {
		role := "player"
		if m.Host {
			role = "host"
		}
		state, ip := "no node", ""
		for _, n := range m.Nodes {
			state = "offline"
			if n.Online {
				state = "online"
			}
			if len(n.IPs) > 0 {
				ip = n.IPs[0]
			}
		}
		fmt.Fprintf(env.Stdout, "  %-16s %-6s %-8s %s\n", m.Username, role, state, ip)
	}
	return nil
}

// gone explains why the user is no longer in a room (closed, kicked,
// left elsewhere, no such room), given what the server said (nil: the
// user is not among the members), and forgets the room when it was the
// one this machine is in. Other errors pass through unchanged.
func gone(ctx context.Context, env Env, c *roomnet.Client, s state, id string, err error) error {
	var ae *roomnet.Error
	if err != nil && !errors.As(err, &ae) {
		return err
	}
	if ae == nil {
		ae = &roomnet.Error{Code: roomnet.CodeNotMember}
	}
	if ae.Code == roomnet.CodeForbidden || ae.Code == roomnet.CodeNotMember {
		// Not a member (members see members): ask the server why. A
		// non-member gets no key, so this changes nothing.
		var why *roomnet.Error
		if _, kerr := c.RenewKey(ctx, id); errors.As(kerr, &why) {
			ae = why
		} else if err != nil {
			return err
		}
	}
	var out error
	switch ae.Code {
	case roomnet.CodeRoomClosed:
		out = fail(ExitRoomClosed, "room %s was closed", id)
	case roomnet.CodeKicked:
		out = fail(ExitKicked, "you were kicked from room %s", id)
	case roomnet.CodeNotMember:
		out = fail(ExitError, "you are not in room %s (any more)", id)
	case roomnet.CodeNotFound:
		out = fail(ExitNotFound, "no room %s", id)
	default:
		return err
	}
	if id == s.Room {
		s.Room = ""
		if serr := saveState(env, s); serr != nil {
			return serr
		}
		out.(*exitError).msg += "; forgotten here"
	}
	return out
}

func cmdLeave(ctx context.Context, args []string, env Env) error {
	fs := newFlags("leave", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, s, id, err := roomTarget(env, fs.Args())
	if err != nil {
		return err
	}
	if err := c.Leave(ctx, id); err != nil {
		// Out of the room already (closed, kicked, left elsewhere): that
		// is what leave wants; the room is forgotten, and the user told.
		var ae *roomnet.Error
		if !errors.As(err, &ae) || ae.Code != roomnet.CodeNotMember && ae.Code != roomnet.CodeRoomClosed && ae.Code != roomnet.CodeNotFound {
			return err
		}
		var ee *exitError
		if errors.As(gone(ctx, env, c, s, id, err), &ee) {
			fmt.Fprintln(env.Stdout, ee.msg)
			return nil
		}
	}
	if s.Room == id {
		s.Room = ""
		if err := saveState(env, s); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "left room %s\n", id)
	return nil
}

func cmdKick(ctx context.Context, args []string, env Env) error {
	fs := newFlags("kick", env)
	room := fs.String("room", "", "room id (default: the room this machine is in)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fail(ExitUsage, "usage: roomnet kick [--room ID] <member>")
	}
	c, s, err := client(env)
	if err != nil {
		return err
	}
	id := *room
	if id == "" {
		if id, err = currentRoom(nil, s); err != nil {
			return err
		}
	}
	if err := c.Kick(ctx, id, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "kicked %s\n", fs.Arg(0))
	return nil
}

func cmdClose(ctx context.Context, args []string, env Env) error {
	fs := newFlags("close", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, _, id, err := roomTarget(env, fs.Args())
	if err != nil {
		return err
	}
	if err := c.CloseRoom(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "closed room %s\n", id)
	return nil
}

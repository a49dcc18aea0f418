// Package lan makes LAN games work over a room: it bridges LAN discovery
// (UDP broadcast and multicast, which a WireGuard network does not carry)
// between the room's members and forwards the host's game ports, all on
// the machine's local network side of a userspace node. Games are
// described by profiles: a small catalogue ships inside the binary and a
// file can extend it.
package lan

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Profile is how a game finds and reaches games on a LAN.
type Profile struct {
	Name      string      `json:"name"`
	Title     string      `json:"title,omitempty"`
	Discovery []Discovery `json:"discovery"`
	Ports     []string    `json:"ports,omitempty"` // game ports, "25565/tcp"
	// Aliases are other names of the game (a room's game "minecraft"
	// picks the profile "minecraft-java").
	Aliases []string `json:"aliases,omitempty"`
}

// Discovery is one way a game announces or looks for games.
type Discovery struct {
	Method string `json:"method"` // broadcast or multicast
	Port   uint16 `json:"port"`
	Group  string `json:"group,omitempty"` // multicast: an IPv4 group
	// Rewrite names how announcements embed addresses that must change on
	// the way ("minecraft": the port in [AD]…[/AD]).
	Rewrite string `json:"rewrite,omitempty"`
}

// String is how the discovery reads for people: "broadcast 6112/udp",
// "multicast 224.0.0.251:5353/udp".
func (d Discovery) String() string {
	if d.Method == Multicast {
		return fmt.Sprintf("multicast %s:%d/udp", d.Group, d.Port)
	}
	return fmt.Sprintf("broadcast %d/udp", d.Port)
}

// Methods.
const (
	Broadcast = "broadcast"
	Multicast = "multicast"
)

//go:embed profiles.json
var builtin []byte

// Catalogue is a set of profiles by name.
type Catalogue map[string]Profile

// Builtin returns the profiles that ship with roomnet.
func Builtin() Catalogue {
	c, err := parseCatalogue(builtin)
	if err != nil {
		panic("lan: built-in profiles: " + err.Error())
	}
	return c
}

// Extend adds the profiles of a JSON file (a list like profiles.json);
// a profile with a built-in name replaces it.
func (c Catalogue) Extend(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("lan: reading profiles: %w", err)
	}
	more, err := parseCatalogue(b)
	if err != nil {
		return fmt.Errorf("lan: %s: %w", path, err)
	}
	for k, v := range more {
		c[k] = v
	}
	return nil
}

// Names lists the catalogue's profile names, sorted.
func (c Catalogue) Names() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lookup returns a profile by name or alias. "broadcast:PORT" is the
// generic profile for a game that broadcasts on UDP port PORT, and
// "multicast:GROUP:PORT" for one that multicasts to an IPv4 group.
func (c Catalogue) Lookup(name string) (Profile, error) {
	if rest, ok := strings.CutPrefix(name, "broadcast:"); ok {
		p, err := strconv.ParseUint(rest, 10, 16)
		if err != nil || p == 0 {
			return Profile{}, fmt.Errorf("lan: %q: want broadcast:<port 1-65535>", name)
		}
		return Profile{Name: name, Title: "UDP broadcast on port " + rest,
			Discovery: []Discovery{{Method: Broadcast, Port: uint16(p)}}}, nil
	}
	if rest, ok := strings.CutPrefix(name, "multicast:"); ok {
		group, port, _ := strings.Cut(rest, ":")
		p, err := strconv.ParseUint(port, 10, 16)
		g, gerr := netip.ParseAddr(group)
		if err != nil || p == 0 || gerr != nil || !g.Is4() || !g.IsMulticast() {
			return Profile{}, fmt.Errorf("lan: %q: want multicast:<IPv4 group>:<port 1-65535>", name)
		}
		return Profile{Name: name, Title: "UDP multicast to " + rest,
			Discovery: []Discovery{{Method: Multicast, Group: g.String(), Port: uint16(p)}}}, nil
	}
	if p, ok := c[name]; ok {
		return p, nil
	}
	for _, n := range c.Names() {
		if slices.Contains(c[n].Aliases, name) {
			return c[n], nil
		}
	}
	return Profile{}, fmt.Errorf("lan: no profile %q; known: %s, broadcast:<port> or multicast:<group>:<port>", name, strings.Join(c.Names(), ", "))
}

// Has reports whether name or an alias names a profile of the catalogue.
func (c Catalogue) Has(name string) bool {
	if _, ok := c[name]; ok {
		return true
	}
	for _, p := range c {
		if slices.Contains(p.Aliases, name) {
			return true
		}
	}
	return false
}

func parseCatalogue(b []byte) (Catalogue, error) {
	var list []Profile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	c := Catalogue{}
	for _, p := range list {
		if err := p.validateName(); err != nil {
			return nil, err
		}
		if err := p.validate(); err != nil {
			return nil, err
		}
		if _, dup := c[p.Name]; dup {
			return nil, fmt.Errorf("profile %q twice", p.Name)
		}
		c[p.Name] = p
	}
	return c, nil
}

// validateName checks the name of a catalogue's profile: the generic
// "broadcast:PORT" and "multicast:GROUP:PORT" are made by Lookup only.
func (p Profile) validateName() error {
	for _, n := range append([]string{p.Name}, p.Aliases...) {
		if n == "" || strings.ContainsAny(n, " :/") || n == "off" {
			return fmt.Errorf("profile name %q: want a word without spaces, colons or slashes", n)
		}
	}
	return nil
}

// validate checks what a bridge needs of a profile.
func (p Profile) validate() error {
	if p.Name == "" {
		return errors.New("profile without a name")
	}
	if len(p.Discovery) == 0 {
		return fmt.Errorf("profile %q: no discovery", p.Name)
	}
	for _, d := range p.Discovery {
		if d.Port == 0 {
			return fmt.Errorf("profile %q: discovery without a port", p.Name)
		}
		switch d.Method {
		case Broadcast:
			if d.Group != "" {
				return fmt.Errorf("profile %q: a broadcast has no group", p.Name)
			}
		case Multicast:
			g, err := netip.ParseAddr(d.Group)
			if err != nil || !g.Is4() || !g.IsMulticast() {
				return fmt.Errorf("profile %q: group %q is not an IPv4 multicast address", p.Name, d.Group)
			}
		default:
			return fmt.Errorf("profile %q: method %q: want broadcast or multicast", p.Name, d.Method)
		}
		if d.Rewrite != "" && d.Rewrite != RewriteMinecraft && d.Rewrite != RewriteDNS {
			return fmt.Errorf("profile %q: unknown rewrite %q", p.Name, d.Rewrite)
		}
	}
	for _, port := range p.Ports {
		num, proto, ok := strings.Cut(port, "/")
		n, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil || n == 0 || proto != "tcp" && proto != "udp" {
			return fmt.Errorf("profile %q: port %q: want N/tcp or N/udp", p.Name, port)
		}
	}
	return nil
}

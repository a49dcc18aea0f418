package lan_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/lan"
	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

// machine makes a network namespace that stands for one player's machine:
// loopback and a LAN interface of its own (nothing leaves the namespace),
// with the default route on that LAN so broadcasts and multicasts have
// somewhere to go. Broadcasts sent there reach that namespace's sockets
// and nothing else.
func machine(t *testing.T, lanIP string) lan.Stack {
	t.Helper()
	if os.Geteuid() != 0 {
		skipLAN(t, "needs root to make network namespaces (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipLAN(t, "needs iproute2's ip to make network namespaces")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "rntest-" + hex.EncodeToString(b)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	run("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run("-n", name, "link", "set", "lo", "up")
	// A veth pair whose both ends stay in the namespace: what goes out of
	// lan0 ends at lan1, which has no address.
	run("-n", name, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
	run("-n", name, "link", "set", "lan1", "up")
	run("-n", name, "addr", "add", lanIP+"/24", "brd", "+", "dev", "lan0")
	run("-n", name, "link", "set", "lan0", "up")
	run("-n", name, "route", "add", "default", "dev", "lan0")
	return lan.Stack{Namespace: name}
}

// skipLAN skips a LAN test, unless the CI requires them
// (ROOMNET_TEST_REQUIRE_LAN=1, set by scripts/ci-services.sh).
func skipLAN(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("ROOMNET_TEST_REQUIRE_LAN") == "1" {
		t.Fatalf("%s, and ROOMNET_TEST_REQUIRE_LAN=1 requires the LAN tests", why)
	}
	t.Skip(why + ": skipped")
}

// fakeGame is a LAN game: it announces itself on the discovery port, or
// listens for announcements, and serves TCP and UDP on its game port.
type fakeGame struct {
	t     *testing.T
	stack lan.Stack
}

func (g fakeGame) serve(port int) {
	ln, err := g.stack.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
	require.NoError(g.t, err)
	pc, err := g.stack.ListenPacket("udp", fmt.Sprintf("0.0.0.0:%d", port))
	require.NoError(g.t, err)
	roomnettest.ServeEcho(g.t, ln, pc, "game:")
}

// announce sends payload to dst every 200 ms from the discovery port.
func (g fakeGame) announce(port int, dst string, payload string) {
	c, err := lan.SharedSocket(g.stack, fmt.Sprintf(":%d", port))
	require.NoError(g.t, err)
	done := make(chan struct{})
	g.t.Cleanup(func() { close(done); c.Close() })
	to, err := net.ResolveUDPAddr("udp4", dst)
	require.NoError(g.t, err)
	go func() {
		for {
			_, _ = c.WriteTo([]byte(payload), to)
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// discover waits on the discovery port for an announcement holding want
// and returns it with its source address.
func (g fakeGame) discover(port int, group string, want string) (string, netip.Addr) {
	c, err := lan.SharedSocket(g.stack, fmt.Sprintf(":%d", port))
	require.NoError(g.t, err)
	defer c.Close()
	if group != "" {
		require.NoError(g.t, lan.JoinGroup(g.stack, c, group))
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err == nil && strings.Contains(string(buf[:n]), want) {
			return string(buf[:n]), src.Addr()
		}
	}
	g.t.Fatalf("no announcement with %q on port %d", want, port)
	return "", netip.Addr{}
}

// play opens a TCP and a UDP session to the discovered game.
func (g fakeGame) play(host netip.Addr, port int) {
	g.t.Helper()
	ctx := roomnettest.Context(g.t, 30*time.Second)
	c, err := g.stack.DialContext(ctx, "tcp", netip.AddrPortFrom(host, uint16(port)).String())
	require.NoError(g.t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintln(c, "join request")
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(g.t, err)
	require.Equal(g.t, "game:join request\n", line)
	u, err := g.stack.DialContext(ctx, "udp", netip.AddrPortFrom(host, uint16(port)).String())
	require.NoError(g.t, err)
	defer u.Close()
	buf := make([]byte, 100)
	for {
		_, _ = u.Write([]byte("state"))
		_ = u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := u.Read(buf); err == nil {
			require.Equal(g.t, "game:state", string(buf[:n]))
			return
		}
		require.NoError(g.t, ctx.Err(), "no UDP answer through the room")
	}
}

type member struct {
	node interface {
		lan.Room
		IP() netip.Addr
	}
	stack lan.Stack
}

// room makes a room with a host and a player, each with a node and a
// machine (namespace) of its own.
func room(t *testing.T, h *roomnettest.Harness, ports []string) (host, player member) {
	ctx := roomnettest.Context(t, 60*time.Second)
	alice, bob := h.User("alice"), h.User("bob")
	r, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "lan party", MaxPlayers: 4, Public: true, Ports: ports})
	require.NoError(t, err)
	grant, err := bob.Join(ctx, r.Room.ID, "")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); host.node = roomnettest.Node(t, r.Join, "alice") }()
	go func() { defer wg.Done(); player.node = roomnettest.Node(t, grant, "bob") }()
	wg.Wait()
	host.stack, player.stack = machine(t, "10.201.0.1"), machine(t, "10.202.0.1")
	return host, player
}

func bridge(t *testing.T, m member, peer member, p lan.Profile) *lan.Bridge {
	pc, err := m.node.ListenPacket(lan.BridgePort)
	require.NoError(t, err)
	b, err := lan.NewBridge(lan.BridgeOptions{
		Profile: p, Stack: m.stack, Room: pc,
		Peers: func() []netip.Addr { return []netip.Addr{peer.node.IP()} },
		Logf:  t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// The host's game broadcasts on its LAN; the player's game, on another
// LAN, hears it through the bridges and plays with it over TCP and UDP.
func TestBroadcastDiscoveryAcrossTheRoom(t *testing.T) {
	h := roomnettest.New(t)
	const disc, gamePort = 4999, 7777
	ports := []string{"7777/tcp", "7777/udp"}
	host, player := room(t, h, ports)
	// The generic profile --lan broadcast:PORT names.
	profile, err := lan.Builtin().Lookup("broadcast:4999")
	require.NoError(t, err)

	hostGame, playerGame := fakeGame{t, host.stack}, fakeGame{t, player.stack}
	hostGame.serve(gamePort)
	// Without the bridge the player's LAN hears nothing: they are two houses.
	hostGame.announce(disc, "255.255.255.255:4999", "FAKEGAME v1 alice's game")
	c, err := lan.SharedSocket(player.stack, ":4999")
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _, err = c.ReadFromUDPAddrPort(make([]byte, 100))
	require.Error(t, err, "the player's LAN heard the host's broadcast without a bridge")
	c.Close()

	hb := bridge(t, host, player, profile)
	pb := bridge(t, player, host, profile)
	hf := &lan.Forwarder{Room: host.node, Stack: host.stack, Logf: t.Logf}
	require.NoError(t, hf.ServeHost(t.Context(), ports))
	t.Cleanup(hf.Close)
	pf := &lan.Forwarder{Room: player.node, Stack: player.stack, Bind: "0.0.0.0", Logf: t.Logf}
	require.NoError(t, pf.ServePlayer(t.Context(), host.node.IP(), ports))
	t.Cleanup(pf.Close)

	msg, from := playerGame.discover(disc, "", "FAKEGAME")
	require.Equal(t, "FAKEGAME v1 alice's game", msg)
	require.Equal(t, "10.202.0.1", from.String(), "the announcement appears on the player's own LAN")
	playerGame.play(from, gamePort)
	require.Positive(t, hb.Sent.Load())
	require.Positive(t, pb.Emitted.Load())
	require.Zero(t, hb.Emitted.Load(), "nothing was sent back: the player's game did not announce")
}

// Minecraft Java announces on multicast 224.0.2.60:4445 with its port in
// the text; the player's game hears it with the port that leads to the
// host on the player's machine.
func TestMinecraftMulticastDiscoveryRewritesThePort(t *testing.T) {
	h := roomnettest.New(t)
	mc, err := lan.Builtin().Lookup("minecraft-java")
	require.NoError(t, err)
	host, player := room(t, h, mc.Ports)
	fakeGame{t, host.stack}.announce(4445, "224.0.2.60:4445", "[MOTD]alice - world[/MOTD][AD]25565[/AD]")
	bridge(t, host, player, mc)
	pc, err := player.node.ListenPacket(lan.BridgePort)
	require.NoError(t, err)
	pb, err := lan.NewBridge(lan.BridgeOptions{Profile: mc, Stack: player.stack, Room: pc,
		Peers:     func() []netip.Addr { return []netip.Addr{host.node.IP()} },
		LocalPort: func(p uint16) uint16 { return p + 10000 }})
	require.NoError(t, err)
	t.Cleanup(func() { pb.Close() })
	msg, _ := fakeGame{t, player.stack}.discover(4445, "224.0.2.60", "[MOTD]")
	require.Equal(t, "[MOTD]alice - world[/MOTD][AD]35565[/AD]", msg)
}

// A member flooding bridged packets gets a bounded number re-emitted, and
// malformed or foreign packets are dropped.
func TestFloodingPeerIsBounded(t *testing.T) {
	h := roomnettest.New(t)
	host, player := room(t, h, nil)
	profile := lan.Profile{Name: "fake", Discovery: []lan.Discovery{{Method: lan.Broadcast, Port: 4998}}}
	pb := bridge(t, player, host, profile)
	out, err := host.node.ListenPacket(0)
	require.NoError(t, err)
	defer out.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(player.node.IP(), lan.BridgePort))
	good, err := lan.Packet{Port: 4998, GamePort: 40000, Payload: []byte("announce")}.Encode()
	require.NoError(t, err)
	foreign, _ := lan.Packet{Port: 1234, GamePort: 40000, Payload: []byte("other game")}.Encode()
	// First one packet until the path is up, then the flood.
	require.Eventually(t, func() bool {
		_, _ = out.WriteTo(good, to)
		return pb.Received.Load() > 0
	}, 30*time.Second, 200*time.Millisecond, "no packet crossed the room")
	start, before := time.Now(), pb.Emitted.Load()
	for range 500 {
		_, _ = out.WriteTo(good, to)
		_, _ = out.WriteTo(foreign, to)
		_, _ = out.WriteTo([]byte("RNLB garbage"), to)
	}
	// UDP over the room may lose some of a burst: wait until arrivals stop.
	for last := int64(-1); ; {
		time.Sleep(500 * time.Millisecond)
		n := pb.Received.Load()
		if n == last {
			break
		}
		last = n
	}
	require.Greater(t, pb.Received.Load(), int64(200), "the flood did not arrive")
	bound := int64(40 + 20*time.Since(start).Seconds() + 1)
	require.LessOrEqual(t, pb.Emitted.Load()-before, bound, "re-emitted more than the rate limit allows")
	require.Positive(t, pb.Emitted.Load())
	require.Positive(t, pb.Dropped.Load())
}

// Query-and-reply discovery: the player's game broadcasts a query, the
// host's game answers it, and the two then talk straight to each other;
// every packet crosses the room through the bridges.
func TestQueryReplyDiscoveryAcrossTheRoom(t *testing.T) {
	h := roomnettest.New(t)
	host, player := room(t, h, nil)
	profile := lan.Profile{Name: "query", Discovery: []lan.Discovery{{Method: lan.Broadcast, Port: 5000}}}
	// The host's game server answers queries on its discovery port.
	srv, err := lan.SharedSocket(host.stack, ":5000")
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			switch string(buf[:n]) {
			case "QUERY":
				_, _ = srv.WriteToUDPAddrPort([]byte("INFO alice's server"), src)
			case "PING":
				_, _ = srv.WriteToUDPAddrPort([]byte("PONG"), src)
			}
		}
	}()
	hb := bridge(t, host, player, profile)
	pb := bridge(t, player, host, profile)
	t.Cleanup(func() {
		for name, b := range map[string]*lan.Bridge{"host": hb, "player": pb} {
			t.Logf("%s bridge: captured %d sent %d received %d emitted %d dropped %d", name,
				b.Captured.Load(), b.Sent.Load(), b.Received.Load(), b.Emitted.Load(), b.Dropped.Load())
		}
	})
	// The player's game asks from an ephemeral port, as clients do.
	cl, err := lan.SharedSocket(player.stack, "0.0.0.0:0")
	require.NoError(t, err)
	defer cl.Close()
	bcast := netip.MustParseAddrPort("255.255.255.255:5000")
	ask := func(to netip.AddrPort, q, want string) netip.AddrPort {
		buf := make([]byte, 1500)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			_, err := cl.WriteToUDPAddrPort([]byte(q), to)
			require.NoError(t, err)
			_ = cl.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, src, err := cl.ReadFromUDPAddrPort(buf)
			if err == nil && string(buf[:n]) == want {
				return src
			}
		}
		t.Fatalf("no %q answer to %q", want, q)
		return netip.AddrPort{}
	}
	server := ask(bcast, "QUERY", "INFO alice's server")
	require.Equal(t, "10.202.0.1", server.Addr().String(), "the answer comes from the player's own LAN")
	ask(server, "PING", "PONG")
}

func TestProfiles(t *testing.T) {
	c := lan.Builtin()
	for _, name := range []string{"minecraft-java", "warcraft3", "source-engine", "mdns", "ssdp", "netbios-ns"} {
		require.Contains(t, c.Names(), name)
	}
	mdns, err := c.Lookup("mdns")
	require.NoError(t, err)
	require.Equal(t, lan.Discovery{Method: lan.Multicast, Group: "224.0.0.251", Port: 5353, Rewrite: lan.RewriteDNS}, mdns.Discovery[0])
	ssdp, _ := c.Lookup("ssdp")
	require.Equal(t, "multicast 239.255.255.250:1900/udp", ssdp.Discovery[0].String())
	nb, _ := c.Lookup("netbios-ns")
	require.Equal(t, "broadcast 137/udp", nb.Discovery[0].String())
	w3, _ := c.Lookup("warcraft3")
	require.Equal(t, uint16(6112), w3.Discovery[0].Port)
	src, _ := c.Lookup("source-engine")
	require.Equal(t, uint16(27015), src.Discovery[0].Port)
	// The README's and the web lobby's game name.
	mc, err := c.Lookup("minecraft")
	require.NoError(t, err)
	require.Equal(t, "minecraft-java", mc.Name)
	require.True(t, c.Has("minecraft"))
	p, err := c.Lookup("broadcast:27016")
	require.NoError(t, err)
	require.Equal(t, uint16(27016), p.Discovery[0].Port)
	p, err = c.Lookup("multicast:239.255.42.1:4001")
	require.NoError(t, err)
	require.Equal(t, lan.Discovery{Method: lan.Multicast, Group: "239.255.42.1", Port: 4001}, p.Discovery[0])
	for _, bad := range []string{"broadcast:0", "broadcast:70000", "broadcast:x", "doom95", "multicast:10.0.0.1:4000", "multicast:239.1.1.1", "multicast:239.1.1.1:0", "multicast:ff02::1:4000"} {
		_, err := c.Lookup(bad)
		require.Error(t, err, bad)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "mine.json")
	require.NoError(t, os.WriteFile(file, []byte(`[{"name":"openttd","discovery":[{"method":"broadcast","port":3979}],"ports":["3979/tcp","3979/udp"]}]`), 0o600))
	require.NoError(t, c.Extend(file))
	p, err = c.Lookup("openttd")
	require.NoError(t, err)
	require.Equal(t, []string{"3979/tcp", "3979/udp"}, p.Ports)
	for name, body := range map[string]string{
		"not json":        `{`,
		"unknown field":   `[{"name":"x","discovery":[{"method":"broadcast","port":1}],"bogus":1}]`,
		"bad method":      `[{"name":"x","discovery":[{"method":"anycast","port":1}]}]`,
		"unicast group":   `[{"name":"x","discovery":[{"method":"multicast","group":"10.0.0.1","port":1}]}]`,
		"no port":         `[{"name":"x","discovery":[{"method":"broadcast"}]}]`,
		"bad game port":   `[{"name":"x","discovery":[{"method":"broadcast","port":1}],"ports":["80/sctp"]}]`,
		"unknown rewrite": `[{"name":"x","discovery":[{"method":"broadcast","port":1,"rewrite":"quake"}]}]`,
		"colon name":      `[{"name":"broadcast:1","discovery":[{"method":"broadcast","port":1}]}]`,
		"bad alias":       `[{"name":"x","aliases":["a b"],"discovery":[{"method":"broadcast","port":1}]}]`,
	} {
		require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
		require.Error(t, c.Extend(file), name)
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := lan.Packet{Port: 4445, Group: netip.MustParseAddr("224.0.2.60"), GamePort: 51000, Payload: []byte("[MOTD]x[/MOTD][AD]25565[/AD]")}.Encode()
	f.Add(good)
	reply, _ := lan.Packet{Kind: lan.KindReply, GamePort: 51000, Port: 27015, Origin: netip.MustParseAddr("192.168.1.20"), Payload: []byte("INFO")}.Encode()
	f.Add(reply)
	f.Add([]byte("RNLB"))
	query, _ := lan.Packet{Kind: lan.KindProfileQuery, Payload: []byte("profile?")}.Encode()
	f.Add(query)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := lan.Decode(b)
		if err != nil {
			return
		}
		if p.GamePort == 0 && p.Kind <= lan.KindDirect || len(p.Payload) == 0 || len(p.Payload) > lan.MaxPayload || p.Group.IsValid() && !p.Group.IsMulticast() ||
			p.Kind == lan.KindAnnounce && p.Port == 0 || p.Kind != lan.KindAnnounce && p.Group.IsValid() || p.Kind > lan.KindProfileAnswer ||
			p.Kind > lan.KindDirect && (p.Port != 0 || p.GamePort != 0 || p.Origin.IsValid()) ||
			p.Origin.IsValid() && (!p.Origin.Is4() || p.Origin.IsMulticast()) {
			t.Fatalf("accepted a bad packet: %+v", p)
		}
		again, err := p.Encode()
		if err != nil || string(again) != string(b) {
			t.Fatalf("does not round-trip: %v", err)
		}
	})
}

// The generic profiles of --lan build a bridge (the validator once
// refused their generated names).
func TestGenericProfilesBuildABridge(t *testing.T) {
	st := machine(t, "10.203.0.1")
	for _, name := range []string{"broadcast:4000", "multicast:239.255.42.1:4001"} {
		p, err := lan.Builtin().Lookup(name)
		require.NoError(t, err)
		room, err := st.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		b, err := lan.NewBridge(lan.BridgeOptions{Profile: p, Stack: st, Room: room, Peers: func() []netip.Addr { return nil }})
		require.NoError(t, err, name)
		require.NoError(t, b.Close())
	}
}

func TestRewriteAddrs(t *testing.T) {
	from := []netip.Addr{netip.MustParseAddr("192.168.1.20"), netip.MustParseAddr("100.64.0.1")}
	to := netip.MustParseAddr("10.0.0.7")
	for in, want := range map[string]string{
		"LOCATION: http://192.168.1.20:8200/rootDesc.xml\r\n": "LOCATION: http://10.0.0.7:8200/rootDesc.xml\r\n",
		"host 100.64.0.1 and 192.168.1.20":                    "host 10.0.0.7 and 10.0.0.7",
		"192.168.1.201 and 1192.168.1.20 stay":                "192.168.1.201 and 1192.168.1.20 stay",
		"192.168.1.20.5 stays, 192.168.1.20. ends":            "192.168.1.20.5 stays, 10.0.0.7. ends",
		"bin \xc0\xa8\x01\x14 end":                            "bin \x0a\x00\x00\x07 end",
	} {
		require.Equal(t, want, string(lan.RewriteAddrs([]byte(in), from, to, false)), in)
	}
	// An mDNS answer: the A record is rewritten, the rest kept.
	msg := dnsmessage.Message{
		Header: dnsmessage.Header{Response: true, Authoritative: true},
		Answers: []dnsmessage.Resource{
			{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("alice\\ game._roomnet._udp.local."), Type: dnsmessage.TypeSRV, Class: dnsmessage.ClassINET | 0x8000, TTL: 120},
				Body: &dnsmessage.SRVResource{Port: 27015, Target: dnsmessage.MustNewName("rnhost.local.")}},
			{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("rnhost.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET | 0x8000, TTL: 120},
				Body: &dnsmessage.AResource{A: [4]byte{192, 168, 1, 20}}},
			{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("other.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 120},
				Body: &dnsmessage.AResource{A: [4]byte{192, 168, 1, 99}}},
		},
	}
	packed, err := msg.Pack()
	require.NoError(t, err)
	out := lan.RewriteAddrs(packed, from, to, true)
	var got dnsmessage.Message
	require.NoError(t, got.Unpack(out))
	require.Len(t, got.Answers, 3)
	require.Equal(t, [4]byte{10, 0, 0, 7}, got.Answers[1].Body.(*dnsmessage.AResource).A)
	require.Equal(t, [4]byte{192, 168, 1, 99}, got.Answers[2].Body.(*dnsmessage.AResource).A, "other hosts' addresses stay")
	require.Equal(t, uint16(27015), got.Answers[0].Body.(*dnsmessage.SRVResource).Port)
	require.Equal(t, dnsmessage.ClassINET|0x8000, got.Answers[1].Header.Class, "the cache-flush bit stays")
}

// Discovery payloads come from strangers' LANs: the rewriting never
// panics, and a DNS message it rewrites stays a DNS message.
func FuzzRewriteAddrs(f *testing.F) {
	f.Add([]byte("LOCATION: http://192.168.1.20:8200/x.xml"), true)
	f.Add([]byte("\xc0\xa8\x01\x14"), false)
	msg := dnsmessage.Message{Header: dnsmessage.Header{Response: true}, Answers: []dnsmessage.Resource{{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("h.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
		Body:   &dnsmessage.AResource{A: [4]byte{192, 168, 1, 20}}}}}
	packed, _ := msg.Pack()
	f.Add(packed, true)
	from := []netip.Addr{netip.MustParseAddr("192.168.1.20")}
	to := netip.MustParseAddr("10.0.0.7")
	f.Fuzz(func(t *testing.T, b []byte, dns bool) {
		in := append([]byte(nil), b...)
		out := lan.RewriteAddrs(b, from, to, dns)
		require.Equal(t, in, b, "the payload was changed in place")
		var p dnsmessage.Parser
		if _, err := p.Start(b); dns && err == nil {
			if _, err := p.AllQuestions(); err == nil {
				if _, err := p.AllAnswers(); err == nil {
					var m dnsmessage.Message
					_ = m.Unpack(out)
				}
			}
		}
		if !dns && !bytes.Contains(b, []byte("192.168.1.20")) && !bytes.Contains(b, []byte{192, 168, 1, 20}) {
			require.Equal(t, b, out, "nothing to rewrite, yet it changed")
		}
	})
}

// A player without the host's profile (a --profiles file of the host's)
// asks the host's bridge over the room which profile it bridges; what a
// host may make a player bridge is bounded.
func TestPlayerAsksTheHostsProfile(t *testing.T) {
	st := machine(t, "10.204.0.1")
	local := netip.MustParseAddr("127.0.0.1")
	ask := func(p lan.Profile) (lan.Profile, error) {
		t.Helper()
		room, err := st.ListenPacket("udp4", "127.0.0.1:7650")
		require.NoError(t, err)
		hb, err := lan.NewBridge(lan.BridgeOptions{Profile: p, Stack: st, Room: room, Peers: func() []netip.Addr { return []netip.Addr{local} }})
		require.NoError(t, err)
		defer hb.Close()
		pc, err := st.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer pc.Close()
		return lan.AskProfile(roomnettest.Context(t, 10*time.Second), pc, local, lan.Builtin())
	}
	openttd := lan.Profile{Name: "openttd", Title: "OpenTTD", Discovery: []lan.Discovery{{Method: lan.Broadcast, Port: 3979}}, Ports: []string{"3979/tcp"}}
	got, err := ask(openttd)
	require.NoError(t, err)
	require.Equal(t, "openttd", got.Name)
	require.Equal(t, openttd.Discovery, got.Discovery)
	require.Empty(t, got.Ports, "the room's ports are the room's")
	// A known name: the player's own definition.
	mine, _ := lan.Builtin().Lookup("minecraft-java")
	evil := mine
	evil.Discovery = []lan.Discovery{{Method: lan.Broadcast, Port: 4000}}
	got, err = ask(evil)
	require.NoError(t, err)
	require.Equal(t, mine, got)
	// Service discovery and privileged ports are not taken from a host.
	for _, p := range []lan.Profile{
		{Name: "sneaky", Discovery: []lan.Discovery{{Method: lan.Multicast, Group: "224.0.0.251", Port: 5353}}},
		{Name: "broadcast:137", Discovery: []lan.Discovery{{Method: lan.Broadcast, Port: 137}}},
		{Name: "low", Discovery: []lan.Discovery{{Method: lan.Broadcast, Port: 999}}},
	} {
		_, err := ask(p)
		require.ErrorContains(t, err, "not taken from a host", p.Name)
	}
	// No bridge there: the question ends with its context.
	pc, err := st.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	_, err = lan.AskProfile(roomnettest.Context(t, time.Second), pc, local, lan.Builtin())
	require.ErrorContains(t, err, "did not answer")
}

// With --tun the player's machine routes the room's addresses itself: an
// announcement naming the host's LAN address reaches the player's game
// with the host's room address, which its game dials directly, not with
// the player's own LAN address, where no forwarder listens under --tun.
// The room network here is loopback (127.0.0.11 the host's room address,
// 127.0.0.12 the player's); each LAN is a namespace of its own.
func TestRoutedBridgeRewritesToTheSendersRoomAddress(t *testing.T) {
	hostStack, playerStack := machine(t, "10.203.0.1"), machine(t, "10.204.0.1")
	hostRoom, playerRoom := netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("127.0.0.12")
	profile, err := lan.Builtin().Lookup("broadcast:4998")
	require.NoError(t, err)
	open := func(stack lan.Stack, self, peer netip.Addr, routed bool) *lan.Bridge {
		pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(self, lan.BridgePort).String())
		require.NoError(t, err)
		b, err := lan.NewBridge(lan.BridgeOptions{
			Profile: profile, Stack: stack, Room: pc, Routed: routed,
			Peers: func() []netip.Addr { return []netip.Addr{peer} },
			Logf:  t.Logf,
		})
		require.NoError(t, err)
		return b
	}
	hb := open(hostStack, hostRoom, playerRoom, false)
	t.Cleanup(func() { hb.Close() })
	fakeGame{t, hostStack}.announce(4998, "255.255.255.255:4998", "FAKEGAME at 10.203.0.1:7777")
	playerGame := fakeGame{t, playerStack}

	for _, tc := range []struct {
		routed bool
		want   string
	}{
		{false, "FAKEGAME at 10.204.0.1:7777"}, // userspace: the player's forwarder on its LAN address
		{true, "FAKEGAME at 127.0.0.11:7777"},  // --tun: the host's room address
	} {
		pb := open(playerStack, playerRoom, hostRoom, tc.routed)
		msg, _ := playerGame.discover(4998, "", "FAKEGAME")
		require.Equal(t, tc.want, msg, "routed %v", tc.routed)
		require.NoError(t, pb.Close())
	}
}

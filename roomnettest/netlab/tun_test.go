package netlab_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnet/lan"
	"github.com/roomnet/roomnet/roomnettest"
	"github.com/roomnet/roomnet/roomnettest/netlab"
)

// LAN discovery with --tun, end to end: the player's machine runs the
// official tailscaled with a real TUN device and `roomnet join --tun`;
// the host runs `roomnet host` (userspace node) beside a game that
// broadcasts "FAKEGAME at <its LAN address>:7777". The player's game
// hears the announcement on its own LAN with the host's room address in
// it, and connects to that address directly over the TUN device.
func TestLANDiscoveryWithTheOfficialClientOnATUN(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tailscaled, runs it with a TUN device in a namespace")
	}
	lab := netlab.New(t)
	srv := startServer(t, lab.Public("srv"))
	hostPC, playerPC := lab.Home(netlab.Easy).PC("alice"), lab.Home(netlab.Easy).PC("bob")
	ts := roomnettest.StartTailscaledWith(t, roomnettest.TailscaledOptions{Namespace: playerPC.Name, TUN: "tailscale0"})

	// The host's game: announces itself and serves TCP 7777.
	ln, err := hostPC.Stack().Listen("tcp4", ":7777")
	if err != nil {
		t.Fatal(err)
	}
	roomnettest.ServeEcho(t, ln, nil, "game:")
	announce, err := lan.SharedSocket(hostPC.Stack(), ":4999")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { announce.Close() })
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		to := &net.UDPAddr{IP: net.IPv4bcast, Port: 4999}
		for {
			_, _ = announce.WriteTo([]byte("FAKEGAME at "+hostPC.Addr.String()+":7777"), to)
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	alice, bob := newPlayer(t, hostPC, srv, "alice"), newPlayer(t, playerPC, srv, "bob")
	host := alice.start("host", "--name", "tun lan party", "--port", "7777/tcp", "--lan", "broadcast:4999")
	room := host.await(t, "room", 60*time.Second)["room"].(map[string]any)
	host.await(t, "node_up", 60*time.Second)
	hostIP := netip.MustParseAddr(host.await(t, "node_up", time.Second)["ip"].(string))

	// The player's game listens for announcements before joining.
	heard := make(chan string, 1)
	listen, err := lan.SharedSocket(playerPC.Stack(), ":4999")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listen.Close() })
	go func() {
		buf := make([]byte, 200)
		for {
			n, _, err := listen.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if msg := string(buf[:n]); strings.HasPrefix(msg, "FAKEGAME") && !strings.Contains(msg, hostPC.Addr.String()) {
				select {
				case heard <- msg:
				default:
				}
			}
		}
	}()
	player := bob.start("join", room["invite_code"].(string), "--tun", "--tailscale-socket", ts.Socket, "--lan", "broadcast:4999")
	player.await(t, "host_reached", 60*time.Second)
	player.await(t, "lan_bridge", 30*time.Second)

	var msg string
	select {
	case msg = <-heard:
	case <-time.After(30 * time.Second):
		t.Fatal("the player's LAN never heard the host's game, rewritten, through the bridge")
	}
	want := "FAKEGAME at " + hostIP.String() + ":7777"
	if msg != want {
		t.Fatalf("the player's game heard %q, want %q (the host's room address, reachable over the TUN)", msg, want)
	}
	// The game connects to what it heard: the kernel routes the room's
	// address into tailscale0.
	c, err := playerPC.Stack().DialContext(t.Context(), "tcp4", netip.AddrPortFrom(hostIP, 7777).String())
	if err != nil {
		t.Fatalf("the player's game dialling the announced address: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "join request")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "game:join request\n" {
		t.Fatalf("game answer %q, %v", line, err)
	}
}

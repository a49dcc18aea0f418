package lan_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet/lan"
	"github.com/roomnet/roomnet/roomnettest"
)

// Discovery with real software from Debian, each machine's LAN in a
// network namespace of its own, host side and player side: what the
// player's software finds of the host's, through a room of real tsnet
// nodes and the bridges. Each case checks first that nothing is found
// without the room.

// need skips a test when a program is missing, unless the CI requires
// the LAN tests (ROOMNET_TEST_REQUIRE_LAN=1).
func need(t *testing.T, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			skipLAN(t, fmt.Sprintf("needs %s (apt-get install avahi-daemon avahi-utils dbus samba samba-common-bin gupnp-tools socat)", p))
		}
	}
}

// output collects a process's output for waiting on it.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// in runs a program in a machine's namespace, in a process group of its
// own: stopping it kills the group, so a child it forked cannot keep its
// output pipe (and the test's Wait) open. WaitDelay bounds Wait anyway.
func in(ctx context.Context, st lan.Stack, env []string, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", st.Namespace, name}, args...)...)
	c.Env = append(os.Environ(), env...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	return c
}

// daemon starts a long-running program in a machine's namespace and
// stops it when the test ends; its output is returned.
func daemon(t *testing.T, st lan.Stack, env []string, name string, args ...string) *output {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	c := in(ctx, st, env, name, args...)
	out := &output{}
	c.Stdout, c.Stderr = out, out
	require.NoError(t, c.Start(), name)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	t.Cleanup(func() {
		stop()
		<-done
		if t.Failed() {
			t.Logf("%s %v in %s:\n%s", name, args, st.Namespace, out.String())
		}
	})
	return out
}

// run runs a program to its end (or timeout) in a machine's namespace.
func run(st lan.Stack, env []string, timeout time.Duration, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, _ := in(ctx, st, env, name, args...).CombinedOutput()
	return string(out)
}

// avahi runs a private system D-Bus and avahi-daemon in a machine (its
// own /run/avahi-daemon through the mount namespace ip netns exec makes)
// and returns the environment avahi's tools need.
func avahi(t *testing.T, st lan.Stack, host string) []string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rnav")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	bus := filepath.Join(dir, "bus")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bus.conf"), []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_type="method_call"/>
    <allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "avahi.conf"), []byte(`[server]
host-name=`+host+`
use-ipv4=yes
use-ipv6=no
allow-interfaces=lan0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`), 0o600))
	daemon(t, st, nil, "dbus-daemon", "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork")
	require.Eventually(t, func() bool { _, err := os.Stat(bus); return err == nil }, 10*time.Second, 20*time.Millisecond, "dbus-daemon did not start")
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + bus}
	log := daemon(t, st, env, "sh", "-c", "mkdir -p /run/avahi-daemon && mount -t tmpfs none /run/avahi-daemon && exec avahi-daemon -f "+filepath.Join(dir, "avahi.conf")+" --no-drop-root --no-chroot --no-rlimits")
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "Server startup complete") }, 15*time.Second, 20*time.Millisecond, "avahi-daemon did not start")
	return env
}

// playerBridge is a player's bridge beside the forwarder of the host's
// game ports, as the CLI runs it.
func playerBridge(t *testing.T, m member, peer member, p lan.Profile, fw *lan.Forwarder) *lan.Bridge {
	pc, err := m.node.ListenPacket(lan.BridgePort)
	require.NoError(t, err)
	b, err := lan.NewBridge(lan.BridgeOptions{
		Profile: p, Stack: m.stack, Room: pc, GameSocket: fw.UDPSocket,
		Peers: func() []netip.Addr { return []netip.Addr{peer.node.IP()} },
		Logf:  t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

func TestDiscoveryWithRealSoftware(t *testing.T) {
	if os.Geteuid() != 0 {
		skipLAN(t, "needs root to make network namespaces (ip netns)")
	}
	h := roomnettest.New(t)
	host, player := room(t, h, []string{"27015/udp"})
	// Each case gets LANs of its own; the room's nodes stay.
	lans := func(t *testing.T) (member, member) {
		hm, pm := host, player
		hm.stack, pm.stack = machine(t, "10.201.0.1"), machine(t, "10.202.0.1")
		return hm, pm
	}

	t.Run("avahi", func(t *testing.T) {
		need(t, "dbus-daemon", "avahi-daemon", "avahi-publish", "avahi-browse")
		hm, pm := lans(t)
		henv, penv := avahi(t, hm.stack, "rnhost"), avahi(t, pm.stack, "rnplayer")
		daemon(t, hm.stack, henv, "avahi-publish", "-s", "alice game", "_roomnet._udp", "27015", "v=1")
		browse := func() string {
			return run(pm.stack, penv, 10*time.Second, "avahi-browse", "-rtp", "_roomnet._udp")
		}
		require.Eventually(t, func() bool {
			return strings.Contains(run(hm.stack, henv, 10*time.Second, "avahi-browse", "-rtp", "_roomnet._udp"), "=;lan0;IPv4;alice")
		}, 15*time.Second, 100*time.Millisecond, "the service is not even seen on the host's LAN")
		require.NotContains(t, browse(), "alice", "the player's LAN saw the host's service without the room")

		mdns, err := lan.Builtin().Lookup("mdns")
		require.NoError(t, err)
		bridge(t, hm, pm, mdns)
		bridge(t, pm, hm, mdns)
		var found string
		require.Eventually(t, func() bool {
			for _, l := range strings.Split(browse(), "\n") {
				if strings.HasPrefix(l, "=;lan0;IPv4;alice\\032game;_roomnet._udp;local;") {
					found = l
					return true
				}
			}
			return false
		}, 30*time.Second, 200*time.Millisecond, "avahi-browse on the player's LAN did not resolve the host's service")
		f := strings.Split(found, ";")
		require.Equal(t, "rnhost.local", f[6])
		require.Equal(t, "10.202.0.1", f[7], "the service resolves to an address the player reaches (its own LAN side)")
		require.Equal(t, "27015", f[8])
	})

	t.Run("nmbd", func(t *testing.T) {
		need(t, "nmbd", "nmblookup")
		hm, pm := lans(t)
		conf := func(st lan.Stack, name string) string {
			dir, err := os.MkdirTemp("", "rnsmb")
			require.NoError(t, err)
			t.Cleanup(func() { os.RemoveAll(dir) })
			var b strings.Builder
			fmt.Fprintf(&b, "[global]\nnetbios name = %s\nworkgroup = RNTEST\ninterfaces = lan0\nbind interfaces only = yes\nlocal master = no\ndisable netbios = no\n", name)
			for _, d := range []string{"lock directory", "state directory", "cache directory", "pid directory", "private dir", "ncalrpc dir"} {
				p := filepath.Join(dir, strings.ReplaceAll(d, " ", "-"))
				require.NoError(t, os.MkdirAll(p, 0o700))
				fmt.Fprintf(&b, "%s = %s\n", d, p)
			}
			fmt.Fprintf(&b, "log file = %s\n", filepath.Join(dir, "log.%m"))
			file := filepath.Join(dir, "smb.conf")
			require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))
			return file
		}
		hconf, pconf := conf(hm.stack, "RNHOST"), conf(pm.stack, "RNPLAYER")
		daemon(t, hm.stack, nil, "nmbd", "-F", "--no-process-group", "-s", hconf)
		require.Eventually(t, func() bool {
			return strings.Contains(run(hm.stack, nil, 5*time.Second, "nmblookup", "-s", hconf, "RNHOST"), "10.201.0.1 RNHOST<00>")
		}, 30*time.Second, 200*time.Millisecond, "nmbd did not register its name on the host's LAN")
		require.NotContains(t, run(pm.stack, nil, 5*time.Second, "nmblookup", "-s", pconf, "RNHOST"), "RNHOST<00>", "the player's LAN found the host's name without the room")

		nb, err := lan.Builtin().Lookup("netbios-ns")
		require.NoError(t, err)
		bridge(t, hm, pm, nb)
		bridge(t, pm, hm, nb)
		require.Eventually(t, func() bool {
			return strings.Contains(run(pm.stack, nil, 5*time.Second, "nmblookup", "-s", pconf, "RNHOST"), "10.202.0.1 RNHOST<00>")
		}, 30*time.Second, 200*time.Millisecond, "nmblookup on the player's LAN did not find the host's name at an address it reaches")
	})

	t.Run("ssdp", func(t *testing.T) {
		need(t, "gssdp-discover", "socat")
		hm, pm := lans(t)
		// A UPnP device on the host's LAN answers M-SEARCH from 1900.
		answer := filepath.Join(t.TempDir(), "answer")
		require.NoError(t, os.WriteFile(answer, []byte("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\nLOCATION: http://10.201.0.1:8200/rootDesc.xml\r\n"+
			"SERVER: Linux/6 UPnP/1.0 roomnet-test/1\r\nST: urn:roomnet-test:device:Game:1\r\nUSN: uuid:0f0e0d0c-0b0a-0908-0706-050403020100::urn:roomnet-test:device:Game:1\r\n\r\n"), 0o600))
		daemon(t, hm.stack, nil, "socat", "UDP4-RECVFROM:1900,reuseaddr,ip-add-membership=239.255.255.250:lan0,fork", "SYSTEM:cat "+answer)
		discover := func(st lan.Stack) string {
			return run(st, nil, 8*time.Second, "gssdp-discover", "-i", "lan0", "-n", "3", "-t", "urn:roomnet-test:device:Game:1")
		}
		require.Eventually(t, func() bool { return strings.Contains(discover(hm.stack), "rootDesc.xml") }, 20*time.Second, 100*time.Millisecond, "the device is not even found on the host's LAN")
		require.NotContains(t, discover(pm.stack), "rootDesc.xml", "the player's LAN found the host's device without the room")

		ssdp, err := lan.Builtin().Lookup("ssdp")
		require.NoError(t, err)
		bridge(t, hm, pm, ssdp)
		bridge(t, pm, hm, ssdp)
		require.Eventually(t, func() bool {
			return strings.Contains(discover(pm.stack), "Location: http://10.202.0.1:8200/rootDesc.xml")
		}, 30*time.Second, 200*time.Millisecond, "gssdp-discover on the player's LAN did not find the host's device at an address it reaches")
	})

	t.Run("socat-connect-back", func(t *testing.T) {
		need(t, "socat")
		hm, pm := lans(t)
		// A Source-engine style server: it answers a broadcast query from
		// its game port, and players then talk to the answer's source.
		server := filepath.Join(t.TempDir(), "server.sh")
		require.NoError(t, os.WriteFile(server, []byte(`read q; echo "$q from alice's server"`+"\n"), 0o600))
		daemon(t, hm.stack, nil, "socat", "UDP4-RECVFROM:27015,reuseaddr,broadcast,fork", "SYSTEM:sh "+server)
		query := func() (string, netip.AddrPort) {
			c, err := lan.SharedSocket(pm.stack, "0.0.0.0:0")
			require.NoError(t, err)
			defer c.Close()
			buf := make([]byte, 1500)
			for range 3 {
				_, err := c.WriteToUDPAddrPort([]byte("INFO?\n"), netip.MustParseAddrPort("255.255.255.255:27015"))
				require.NoError(t, err)
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if n, src, err := c.ReadFromUDPAddrPort(buf); err == nil {
					return string(buf[:n]), src
				}
			}
			return "", netip.AddrPort{}
		}
		msg, _ := query()
		require.Empty(t, msg, "the player's LAN reached the host's server without the room")

		src, err := lan.Builtin().Lookup("source-engine")
		require.NoError(t, err)
		bridge(t, hm, pm, src)
		hf := &lan.Forwarder{Room: hm.node, Stack: hm.stack, Logf: t.Logf}
		require.NoError(t, hf.ServeHost(t.Context(), []string{"27015/udp"}))
		t.Cleanup(hf.Close)
		pf := &lan.Forwarder{Room: pm.node, Stack: pm.stack, Bind: "0.0.0.0", Logf: t.Logf}
		require.NoError(t, pf.ServePlayer(t.Context(), hm.node.IP(), []string{"27015/udp"}))
		t.Cleanup(pf.Close)
		pb := playerBridge(t, pm, hm, src, pf)
		var from netip.AddrPort
		require.Eventually(t, func() bool {
			msg, from = query()
			return msg == "INFO? from alice's server\n"
		}, 30*time.Second, 100*time.Millisecond, "no answer to the player's broadcast query")
		require.Equal(t, "10.202.0.1:27015", from.String(), "the answer comes from the game's port, on the player's side")
		// Connect back to the answer's source: the host's server answers.
		c, err := pm.stack.DialContext(t.Context(), "udp4", from.String())
		require.NoError(t, err)
		defer c.Close()
		buf := make([]byte, 100)
		require.Eventually(t, func() bool {
			_, _ = c.Write([]byte("JOIN\n"))
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Read(buf)
			return err == nil && string(buf[:n]) == "JOIN from alice's server\n"
		}, 20*time.Second, 10*time.Millisecond, "connecting back to the answer's source did not reach the host's server")
		require.Positive(t, pb.Emitted.Load())
	})
}

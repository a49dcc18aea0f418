// Package netlab builds small networks of Linux network namespaces for
// tests: an "internet" (a bridge in a namespace of its own), a server on
// it, and homes behind routers that translate addresses the way real home
// routers, carrier-grade NATs and firewalls do (nftables). Programs run in
// a host with Host.Command; Go code dials from one with Host.Stack.
//
// Everything lives in namespaces the test made and is removed when it
// ends; nothing is added to the machine's own network. It needs root,
// iproute2 and nftables; Require says why a test cannot run.
package netlab

import (
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

	"github.com/roomnet/roomnet/roomnet/lan"
)

// NAT is how a home router translates its LAN's traffic to the internet.
type NAT string

const (
	// Easy maps a LAN socket to one public port whatever it sends to
	// (endpoint-independent mapping, port kept where free) and lets in
	// only what comes from where that socket sent (address-and-port
	// dependent filtering: a port-restricted cone): most home routers,
	// Linux-based ones among them. Hole punching between two works.
	Easy NAT = "easy"
	// Symmetric maps every new destination to a new random public port
	// (endpoint-dependent mapping, nftables fully-random): many
	// carrier-grade NATs and enterprise firewalls. Two of them cannot
	// punch through to each other.
	Symmetric NAT = "symmetric"
	// NoUDP is Easy for TCP and drops UDP out entirely: campus and
	// corporate networks that allow only web traffic.
	NoUDP NAT = "no-udp"
)

// internet is the public network's prefix. It is not a reserved block
// (TEST-NET and the like): router software such as miniupnpd refuses to map
// ports on a "public" address from one. The namespaces have no link to the
// machine's own network, so nothing is ever sent to the block's owner.
const internet = "198.20.0."

// Unrouted is an address on the lab's internet that no host has.
const Unrouted = internet + "250"

// Lab is a set of namespaces a test made.
type Lab struct {
	t      testing.TB
	prefix string
	inet   string // namespace holding the internet's bridge

	mu    sync.Mutex
	hosts int // internet addresses handed out
	homes int
}

// Host is a machine of the lab: a namespace with one address.
type Host struct {
	Name string     // the namespace
	Addr netip.Addr // its address: on the internet, or on its home's LAN
}

// Stack is the host's network for Go code (dial, listen) in the test.
func (h Host) Stack() lan.Stack { return lan.Stack{Namespace: h.Name} }

// Command runs a program on the host.
func (h Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Home is a LAN behind a router.
type Home struct {
	lab    *Lab
	Router Host // its address is the home's public address
	NAT    NAT
	subnet string // "192.168.N."
	pcs    int
}

// Require skips the test, or fails it when ROOMNET_TEST_REQUIRE_LAN=1 (CI),
// unless the lab can be built here.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root to make network namespaces"
	default:
		for _, bin := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(bin); err != nil {
				why = "needs " + bin + " (iproute2, nftables)"
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("ROOMNET_TEST_REQUIRE_LAN") == "1" {
		t.Fatalf("netlab: %s, and ROOMNET_TEST_REQUIRE_LAN=1 requires it", why)
	}
	t.Skip("netlab: " + why + ": skipped")
}

// New makes an empty internet.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &Lab{t: t, prefix: "nl" + hex.EncodeToString(b)}
	l.inet = l.namespace("inet")
	l.ip(l.inet, "link", "add", "br0", "type", "bridge")
	l.ip(l.inet, "link", "set", "br0", "up")
	return l
}

// namespace makes a namespace with loopback up, removed at the test's end.
func (l *Lab) namespace(role string) string {
	name := l.prefix + "-" + role
	l.run("ip", "netns", "add", name)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	l.ip(name, "link", "set", "lo", "up")
	return name
}

func (l *Lab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// ip runs ip in a namespace.
func (l *Lab) ip(ns string, args ...string) {
	l.t.Helper()
	l.run("ip", append([]string{"-n", ns}, args...)...)
}

// nft loads an nftables ruleset into a namespace.
func (l *Lab) nft(ns, ruleset string) {
	l.t.Helper()
	c := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	c.Stdin = strings.NewReader(ruleset)
	if out, err := c.CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: nft in %s: %v\n%s\n%s", ns, err, out, ruleset)
	}
}

// plug connects namespace ns to the internet bridge with interface ifname
// and a public address, which it returns.
func (l *Lab) plug(ns, ifname string) netip.Addr {
	l.mu.Lock()
	l.hosts++
	addr := netip.MustParseAddr(fmt.Sprintf("%s%d", internet, 1+l.hosts))
	n := l.hosts
	l.mu.Unlock()
	peer := fmt.Sprintf("%s-i%d", l.prefix, n)
	l.ip(ns, "link", "add", ifname, "type", "veth", "peer", "name", peer, "netns", l.inet)
	l.ip(l.inet, "link", "set", peer, "master", "br0")
	l.ip(l.inet, "link", "set", peer, "up")
	l.ip(ns, "addr", "add", addr.String()+"/24", "dev", ifname)
	l.ip(ns, "link", "set", ifname, "up")
	return addr
}

// Public adds a machine with a public address: a server, or a player
// with no NAT at all.
func (l *Lab) Public(role string) Host {
	ns := l.namespace(role)
	return Host{Name: ns, Addr: l.plug(ns, "eth0")}
}

// Home adds a LAN behind a router of the given kind.
func (l *Lab) Home(nat NAT) *Home {
	l.mu.Lock()
	l.homes++
	n := l.homes
	l.mu.Unlock()
	ns := l.namespace(fmt.Sprintf("r%d", n))
	wan := l.plug(ns, "wan")
	h := &Home{lab: l, Router: Host{Name: ns, Addr: wan}, NAT: nat, subnet: fmt.Sprintf("192.168.%d.", n)}
	l.ip(ns, "link", "add", "lan", "type", "bridge")
	l.ip(ns, "addr", "add", h.subnet+"1/24", "dev", "lan")
	l.ip(ns, "link", "set", "lan", "up")
	l.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.nft(ns, natRules(nat))
	return h
}

// natRules is the router's nftables ruleset for a kind of NAT. Like a
// real home router it drops what the internet sends it unasked: a packet
// it accepted would leave a connection-tracking entry that holds the
// public port, so the LAN's own mapping for that peer would move to
// another port and hole punching would fail where it should work. What a
// port mapping (MapPorts) forwards is let through, as OpenWrt's firewall
// does for its port forwards; without one nothing is forwarded.
func natRules(nat NAT) string {
	masq := "masquerade"
	if nat == Symmetric {
		masq = "masquerade fully-random"
	}
	udp := ""
	if nat == NoUDP {
		udp = `iifname "lan" oifname "wan" meta l4proto udp drop`
	}
	return fmt.Sprintf(`table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" %s
	}
}
table ip filter {
	counter stray {
	}
	chain pre {
		type filter hook prerouting priority filter; policy accept;
		iifname "lan" ip daddr != { %s0/24, 192.168.0.0/16, 224.0.0.0/4, 255.255.255.255 } counter name "stray"
	}
	chain input {
		type filter hook input priority filter; policy drop;
		iifname { "lo", "lan" } accept
		ct state established,related accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		%s
		iifname "lan" accept
		ct state established,related accept
		ct status dnat accept
	}
}
`, masq, internet, udp)
}

// SetMTU lowers the MTU of the router's link to the internet, as PPPoE
// (1492), a tunnel or a VPN does: bigger packets that must not be
// fragmented are dropped there, with an ICMP "fragmentation needed".
func (h *Home) SetMTU(mtu int) {
	h.lab.t.Helper()
	h.lab.ip(h.Router.Name, "link", "set", "wan", "mtu", fmt.Sprint(mtu))
}

// Forward forwards a port of the router's public address to the same port
// of a PC on the home's LAN (proto "udp" or "tcp"), as a port forward set
// by hand in a home router's settings does. The router's firewall lets
// what it forwards through.
func (h *Home) Forward(proto string, port uint16, to Host) {
	h.lab.t.Helper()
	h.lab.nft(h.Router.Name, fmt.Sprintf(`table ip nat {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" %s dport %d dnat to %s
	}
}
`, proto, port, to.Addr))
}

// Strays counts the packets the home's LAN sent to somewhere beyond the
// lab's internet (an address on the real internet: a log server, a
// public DNS resolver). The router has no route there; they are counted
// as they arrive, before it drops them.
func (h *Home) Strays() int {
	h.lab.t.Helper()
	out, err := h.Router.Command("nft", "list", "counter", "ip", "filter", "stray").CombinedOutput()
	if err != nil {
		h.lab.t.Fatalf("netlab: reading the stray counter: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	for i := range f[:max(0, len(f)-1)] {
		if f[i] == "packets" {
			var n int
			if _, err := fmt.Sscanf(f[i+1], "%d", &n); err == nil {
				return n
			}
		}
	}
	h.lab.t.Fatalf("netlab: no packet count in %q", out)
	return 0
}

// PC adds a machine on the home's LAN, routed through its router.
func (h *Home) PC(role string) Host {
	l := h.lab
	l.mu.Lock()
	h.pcs++
	n := h.pcs
	l.mu.Unlock()
	ns := l.namespace(role)
	addr := netip.MustParseAddr(fmt.Sprintf("%s%d", h.subnet, 1+n))
	peer := fmt.Sprintf("%s-l%d", strings.TrimPrefix(h.Router.Name, l.prefix+"-"), n)
	l.ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", h.Router.Name)
	l.ip(h.Router.Name, "link", "set", peer, "master", "lan")
	l.ip(h.Router.Name, "link", "set", peer, "up")
	l.ip(ns, "addr", "add", addr.String()+"/24", "dev", "eth0")
	l.ip(ns, "link", "set", "eth0", "up")
	l.ip(ns, "route", "add", "default", "via", h.subnet+"1")
	return Host{Name: ns, Addr: addr}
}

// miniupnpdChains are the nftables chains miniupnpd (nftables backend)
// writes its port forwards into: table inet filter, as its Debian
// package's documentation sets them up.
const miniupnpdChains = `table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump prerouting_miniupnpd
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump postrouting_miniupnpd
	}
	chain postrouting_miniupnpd {
	}
}
`

// RequireMiniupnpd skips the test, or fails it when
// ROOMNET_TEST_REQUIRE_LAN=1, unless miniupnpd is installed.
func RequireMiniupnpd(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("miniupnpd"); err == nil {
		return
	}
	if os.Getenv("ROOMNET_TEST_REQUIRE_LAN") == "1" {
		t.Fatal("netlab: needs miniupnpd (apt-get install miniupnpd), and ROOMNET_TEST_REQUIRE_LAN=1 requires it")
	}
	t.Skip("netlab: needs miniupnpd: skipped")
}

// MapPorts runs a port-mapping gateway on the home's router, as most home
// routers have one: miniupnpd, the UPnP IGD, NAT-PMP and PCP daemon of
// OpenWrt and other Linux-based routers, with its nftables backend. It
// answers on the LAN only, maps only to the asking PC's own address
// (secure mode) and only ports 1024 and up. It returns once the daemon
// answers a NAT-PMP request with the router's public address; it is
// stopped at the test's end.
func (h *Home) MapPorts() {
	l := h.lab
	l.t.Helper()
	RequireMiniupnpd(l.t)
	l.nft(h.Router.Name, miniupnpdChains)
	dir := l.t.TempDir()
	conf := fmt.Sprintf(`ext_ifname=wan
listening_ip=lan
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
lease_file=%[1]s/leases
uuid=%[2]s
allow 1024-65535 %[3]s0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, dir, uuidFor(h.Router.Name), h.subnet)
	if err := os.WriteFile(filepath.Join(dir, "miniupnpd.conf"), []byte(conf), 0o600); err != nil {
		l.t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "miniupnpd.log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := h.Router.Command("miniupnpd", "-d", "-f", filepath.Join(dir, "miniupnpd.conf"), "-P", filepath.Join(dir, "miniupnpd.pid"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("netlab: starting miniupnpd: %v", err)
	}
	l.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if l.t.Failed() {
			out, _ := os.ReadFile(log.Name())
			l.t.Logf("miniupnpd on %s:\n%s", h.Router.Name, out)
		}
		log.Close()
	})
	// NAT-PMP's "public address" request (RFC 6886 3.2), asked from the
	// router's own LAN address until the daemon answers.
	pc, err := h.Router.Stack().ListenPacket("udp4", h.subnet+"1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	defer pc.Close()
	gw := &net.UDPAddr{IP: net.ParseIP(h.subnet + "1"), Port: 5351}
	buf := make([]byte, 64)
	for end := time.Now().Add(10 * time.Second); ; {
		_, _ = pc.WriteTo([]byte{0, 0}, gw)
		_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err == nil && n >= 12 && buf[1] == 128 {
			if got := netip.AddrFrom4([4]byte(buf[8:12])); buf[3] != 0 || got != h.Router.Addr {
				out, _ := os.ReadFile(log.Name())
				l.t.Fatalf("netlab: miniupnpd answers result %d, public address %v, want 0 and %v\n%s", buf[3], got, h.Router.Addr, out)
			}
			return
		}
		if time.Now().After(end) {
			out, _ := os.ReadFile(log.Name())
			l.t.Fatalf("netlab: miniupnpd on %s did not answer NAT-PMP in 10 s\n%s", h.Router.Name, out)
		}
	}
}

// uuidFor is a UPnP device UUID made from a name.
func uuidFor(name string) string {
	b := make([]byte, 16)
	copy(b, name)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

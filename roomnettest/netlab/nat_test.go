package netlab_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnettest/netlab"
)

// bin holds roomnetd and roomnet, built once for the package.
var bin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "roomnet-netlab")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if os.Geteuid() == 0 { // the lab needs root: build only where it can run
			out, err := exec.Command("go", "build", "-o", dir+"/", "../../cmd/roomnetd", "../../cmd/roomnet").CombinedOutput()
			if err != nil {
				panic(fmt.Sprintf("building: %v\n%s", err, out))
			}
		}
		bin = dir
		return m.Run()
	}()
	os.Exit(code)
}

// Two PCs behind easy NATs punch a hole to each other by sending to each
// other's public address at once; behind symmetric NATs they cannot.
func TestHolePunchingThroughTheLabsRouters(t *testing.T) {
	lab := netlab.New(t)
	for _, tc := range []struct {
		nat  netlab.NAT
		want bool
	}{{netlab.Easy, true}, {netlab.Symmetric, false}} {
		ha, hb := lab.Home(tc.nat), lab.Home(tc.nat)
		a, b := ha.PC("pa-"+string(tc.nat)), hb.PC("pb-"+string(tc.nat))
		ca, err := a.Stack().ListenPacket("udp4", ":40000")
		if err != nil {
			t.Fatal(err)
		}
		defer ca.Close()
		cb, err := b.Stack().ListenPacket("udp4", ":40001")
		if err != nil {
			t.Fatal(err)
		}
		defer cb.Close()
		got := make(chan string, 20)
		for _, c := range []net.PacketConn{ca, cb} {
			go func() {
				buf := make([]byte, 10)
				for {
					n, _, err := c.ReadFrom(buf)
					if err != nil {
						return
					}
					got <- string(buf[:n])
				}
			}()
		}
		// Fresh links may lose the first packets: keep sending for up to
		// 3 s, until each side heard the other.
		heard := map[string]bool{}
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !(heard["a"] && heard["b"]); {
			_, _ = ca.WriteTo([]byte("a"), &net.UDPAddr{IP: hb.Router.Addr.AsSlice(), Port: 40001})
			_, _ = cb.WriteTo([]byte("b"), &net.UDPAddr{IP: ha.Router.Addr.AsSlice(), Port: 40000})
			time.Sleep(50 * time.Millisecond)
			for len(got) > 0 {
				heard[<-got] = true
			}
		}
		if both := heard["a"] && heard["b"]; both != tc.want {
			t.Fatalf("%s NATs: each heard the other: %v (heard %v), want %v", tc.nat, both, heard, tc.want)
		}
	}
}

// A lab's routers do what their kind says: from behind an easy NAT a UDP
// socket keeps one public port whatever it sends to; behind a symmetric
// NAT every destination gets another; behind no-udp nothing leaves but
// TCP does. Seen by a public echo server that reports each packet's
// source.
func TestRoutersTranslateAsTheirKindSays(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.Public("echo")
	srcs := startSourceEcho(t, echo)
	for _, nat := range []netlab.NAT{netlab.Easy, netlab.Symmetric, netlab.NoUDP} {
		home := lab.Home(nat) // the lab fails its own test: not in a subtest
		pc := home.PC("pc-" + string(nat))
		t.Run(string(nat), func(t *testing.T) {
			seen := sendFrom(t, pc, echo, home.Router.Addr, srcs)
			switch nat {
			case netlab.Easy:
				if len(seen) != 2 || seen[0] != seen[1] || !strings.HasPrefix(seen[0], home.Router.Addr.String()+":") {
					t.Fatalf("easy NAT: sources %v, want one port on %s for both destinations", seen, home.Router.Addr)
				}
				// What is sent beyond the lab is counted (and dropped).
				if n := home.Strays(); n != 0 {
					t.Fatalf("easy NAT: %d strays before any was sent", n)
				}
				c, err := pc.Stack().ListenPacket("udp4", ":0")
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 53})
				c.Close()
				if n := home.Strays(); n != 1 {
					t.Fatalf("easy NAT: %d strays counted, want 1", n)
				}
			case netlab.Symmetric:
				if len(seen) != 2 || seen[0] == seen[1] || !strings.HasPrefix(seen[0], home.Router.Addr.String()+":") {
					t.Fatalf("symmetric NAT: sources %v, want two ports on %s", seen, home.Router.Addr)
				}
			case netlab.NoUDP:
				if len(seen) != 0 {
					t.Fatalf("no-udp: UDP got out from %v", seen)
				}
				c, err := pc.Stack().DialContext(t.Context(), "tcp", net.JoinHostPort(echo.Addr.String(), "7000"))
				if err != nil {
					t.Fatalf("no-udp: TCP out: %v", err)
				}
				c.Close()
			}
		})
	}
}

// startSourceEcho listens on the host on UDP 7000 and 7001 and TCP 7000;
// every UDP packet's source address is sent on the returned channel.
func startSourceEcho(t *testing.T, h netlab.Host) <-chan string {
	t.Helper()
	srcs := make(chan string, 16)
	for _, port := range []string{"7000", "7001"} {
		pc, err := h.Stack().ListenPacket("udp4", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 100)
			for {
				_, src, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				srcs <- port + " " + src.String()
			}
		}()
	}
	ln, err := h.Stack().Listen("tcp4", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return srcs
}

// sendFrom sends UDP from one socket on pc to each of the echo's two
// ports (again every 100 ms for a second: fresh links may lose the first
// packets) and returns, per port, the source the echo saw from the
// public address public (what other tests' packets left is ignored).
func sendFrom(t *testing.T, pc, echo netlab.Host, public netip.Addr, srcs <-chan string) []string {
	t.Helper()
	c, err := pc.Stack().ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]string{}
	for end := time.Now().Add(time.Second); time.Now().Before(end) && len(seen) < 2; {
		for _, port := range []int{7000, 7001} {
			if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: echo.Addr.AsSlice(), Port: port}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		for len(srcs) > 0 {
			port, src, _ := strings.Cut(<-srcs, " ")
			if seen[port] == "" && strings.HasPrefix(src, public.String()+":") {
				seen[port] = src
			}
		}
	}
	var out []string
	for _, port := range []string{"7000", "7001"} {
		if seen[port] != "" {
			out = append(out, seen[port])
		}
	}
	return out
}

// server is roomnetd running on a public host of the lab.
type server struct {
	url string
}

// startServer runs roomnetd on host h with its embedded Headscale, DERP
// relay and STUN on h's public address.
func startServer(t *testing.T, h netlab.Host) server {
	t.Helper()
	a := h.Addr.String()
	cmd := h.Command(filepath.Join(bin, "roomnetd"))
	cmd.Env = append(os.Environ(),
		"ROOMNET_LISTEN=0.0.0.0:8080", "ROOMNET_PUBLIC_URL=http://"+a+":8080",
		"ROOMNET_DATA_DIR="+t.TempDir(),
		"ROOMNET_HEADSCALE_LISTEN=0.0.0.0:8081", "ROOMNET_HEADSCALE_SERVER_URL=http://"+a+":8081",
		"ROOMNET_DERP_LISTEN=0.0.0.0:8443", "ROOMNET_DERP_STUN_LISTEN=0.0.0.0:3478", "ROOMNET_DERP_HOSTNAME="+a,
		"ROOMNET_DERP_STUN_ALT_LISTEN=0.0.0.0:3479",
		"ROOMNET_ADMIN_PASSWORD=admin-password-for-tests",
	)
	logf, err := os.Create(filepath.Join(t.TempDir(), "roomnetd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("roomnetd log:\n%s", tail(string(out), 60))
		}
	})
	s := server{url: "http://" + a + ":8080"}
	hc := &http.Client{Transport: &http.Transport{DialContext: h.Stack().DialContext}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := hc.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("roomnetd in the lab did not become healthy: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// player is the real roomnet CLI on a lab host, with a config dir of its
// own. Direct UDP is not forbidden here, unlike in the loopback harness.
type player struct {
	t    *testing.T
	host netlab.Host
	dir  string
	name string
}

func newPlayer(t *testing.T, h netlab.Host, srv server, name string) *player {
	p := &player{t: t, host: h, dir: t.TempDir(), name: name}
	if code, out := p.run("password-"+name+"\n", "register", "--server", srv.url, "--username", name, "--password-stdin"); code != 0 {
		t.Fatalf("register %s: exit %d: %s", name, code, out)
	}
	return p
}

func (p *player) cmd(stdin string, args ...string) *exec.Cmd {
	c := p.host.Command(filepath.Join(bin, "roomnet"), args...)
	c.Env = append(os.Environ(), "ROOMNET_CONFIG_DIR="+p.dir, "ROOMNET_NODE_LOG=1")
	c.Stdin = strings.NewReader(stdin)
	return c
}

func (p *player) run(stdin string, args ...string) (int, string) {
	p.t.Helper()
	out, err := p.cmd(stdin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		p.t.Fatal(err)
	}
	return 0, string(out)
}

// session is a running `roomnet host` or `roomnet join --json`.
type session struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []map[string]any
	stderr strings.Builder
	added  chan struct{}
}

func (p *player) start(args ...string) *session {
	p.t.Helper()
	s := &session{cmd: p.cmd("", append(args, "--json")...), added: make(chan struct{}, 1)}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	if err := s.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if dir := os.Getenv("ROOMNET_NETLAB_LOGS"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(p.t.Name(), "/", "_")+"-"+p.name+".log"), []byte(s.stderr.String()), 0o600)
		}
		if p.t.Failed() {
			p.t.Logf("%s stderr (ROOMNET_NETLAB_LOGS=DIR keeps it whole):\n%s", p.name, tail(s.stderr.String(), 40))
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			s.mu.Lock()
			s.events = append(s.events, ev)
			s.mu.Unlock()
			select {
			case s.added <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// await returns the first event of that name, waiting up to d.
func (s *session) await(t *testing.T, name string, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		s.mu.Lock()
		for _, ev := range s.events {
			if ev["event"] == name {
				s.mu.Unlock()
				return ev
			}
		}
		s.mu.Unlock()
		select {
		case <-s.added:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("no %q event in %v; events: %v; stderr: %s", name, d, s.events, tail(s.stderr.String(), 20))
			return nil
		}
	}
}

// ping is one `roomnet ping --json` result.
type ping struct {
	RTTMS  float64 `json:"rtt_ms"`
	Direct bool    `json:"direct"`
	Path   string  `json:"path"`
	// PeerRelay: through a roommate's peer relay (Path is its
	// "ip:port:vni:N").
	PeerRelay bool   `json:"peer_relay"`
	Error     string `json:"error"`
}

func (p *player) ping(member string) ping {
	p.t.Helper()
	code, out := p.run("", "ping", member, "--count", "1", "--json")
	var r ping
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil || code != 0 {
		return ping{Error: fmt.Sprintf("exit %d: %s", code, out)}
	}
	return r
}

// pairResult is what one pair of players got.
type pairResult struct {
	reached  time.Duration // join started → the host's node answered
	toDirect time.Duration // join started → first direct ping; 0: never
	final    ping
	mbps     float64 // a TCP stream through the room on the final path
}

// gamePort is the host's forwarded TCP port the throughput stream uses.
const gamePort = "25600"

// throughput sends zeros for d from b's forwarded game port to a sink on
// a's (the "game" on the host's machine) and returns the rate the sink
// received at, in Mbit/s.
func throughput(t *testing.T, a, b netlab.Host, d time.Duration) float64 {
	t.Helper()
	ln, err := a.Stack().Listen("tcp4", "127.0.0.1:"+gamePort)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n           int64
		first, last time.Time
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{}
			return
		}
		defer c.Close()
		var r result
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if r.n == 0 {
					r.first = time.Now()
				}
				r.n += int64(n)
				r.last = time.Now()
			}
			if err != nil {
				got <- r
				return
			}
		}
	}()
	// The player's session listens on the forwarded port once its node
	// is up; it is, by now, but give it a few tries.
	var c net.Conn
	for end := time.Now().Add(10 * time.Second); ; {
		c, err = b.Stack().DialContext(t.Context(), "tcp4", "127.0.0.1:"+gamePort)
		if err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the forwarded game port on %s: %v", b.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	buf := make([]byte, 64<<10)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("stream through the room: %v", err)
		}
	}
	c.Close()
	r := <-got
	if r.n == 0 || !r.last.After(r.first) {
		t.Fatalf("stream through the room: the host's game received %d bytes", r.n)
	}
	return float64(r.n*8) / r.last.Sub(r.first).Seconds() / 1e6
}

// pair hosts a room on a and joins it from b, then pings a from b for up
// to watch, and reports the path it ended on.
func pair(t *testing.T, srv server, a, b netlab.Host, watch time.Duration) pairResult {
	t.Helper()
	host := newPlayer(t, a, srv, "alice")
	guest := newPlayer(t, b, srv, "bob")
	hs := host.start("host", "--name", "lab room", "--port", gamePort+"/tcp", "--lan", "off")
	room := hs.await(t, "room", 60*time.Second)["room"].(map[string]any)
	hs.await(t, "node_up", 60*time.Second)
	start := time.Now()
	gs := guest.start("join", room["invite_code"].(string))
	gs.await(t, "host_reached", 60*time.Second)
	r := pairResult{reached: time.Since(start)}
	for end := time.Now().Add(watch); ; {
		p := guest.ping("alice")
		if p.Error == "" {
			r.final = p
			if p.Direct && r.toDirect == 0 {
				r.toDirect = time.Since(start)
			}
		}
		if time.Now().After(end) || r.toDirect != 0 {
			break
		}
	}
	r.mbps = throughput(t, a, b, 3*time.Second)
	return r
}

// Two players behind different kinds of NAT, each pair in a lab of its
// own: the pair works whatever the NATs, and ends direct exactly where
// hole punching can work. The measured matrix is in docs/benchmarks.md.
func TestPlayersBehindNATs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs roomnetd and the CLI in namespaces")
	}
	for _, tc := range []struct {
		a, b       netlab.NAT
		mapA, mapB bool // the router maps ports (UPnP, NAT-PMP, PCP)
		direct     bool
	}{
		{a: netlab.Easy, b: netlab.Easy, direct: true},
		// Linux-style routers filter by the peer's address and port
		// (port-restricted cone): the symmetric side's packets come from
		// ports the easy side never sent to, so this pair stays relayed.
		{a: netlab.Easy, b: netlab.Symmetric, direct: false},
		{a: netlab.Symmetric, b: netlab.Symmetric, direct: false},
		{a: netlab.NoUDP, b: netlab.Easy, direct: false},
		// A router that maps a port gives its player one public port
		// that anyone may send to: the hard NAT is no longer in the way.
		{a: netlab.Easy, b: netlab.Symmetric, mapB: true, direct: true},
		{a: netlab.Symmetric, b: netlab.Symmetric, mapA: true, mapB: true, direct: true},
		{a: netlab.Symmetric, b: netlab.Symmetric, mapA: true, direct: true},
	} {
		name := func(n netlab.NAT, mapped bool) string {
			if mapped {
				return string(n) + "+upnp"
			}
			return string(n)
		}
		na, nb := name(tc.a, tc.mapA), name(tc.b, tc.mapB)
		t.Run(na+"-"+nb, func(t *testing.T) {
			lab := netlab.New(t)
			srv := startServer(t, lab.Public("srv"))
			ha, hb := lab.Home(tc.a), lab.Home(tc.b)
			if tc.mapA {
				ha.MapPorts()
			}
			if tc.mapB {
				hb.MapPorts()
			}
			a, b := ha.PC("alice"), hb.PC("bob")
			r := pair(t, srv, a, b, 20*time.Second)
			t.Logf("MATRIX %s ↔ %s: reached in %v, direct after %v, final %+v, %.0f Mbit/s", na, nb, r.reached.Round(time.Millisecond), r.toDirect.Round(time.Millisecond), r.final, r.mbps)
			if r.final.Error != "" || r.final.RTTMS <= 0 {
				t.Fatalf("%s ↔ %s: no working path: %+v", na, nb, r.final)
			}
			if r.final.Direct != tc.direct {
				t.Fatalf("%s ↔ %s: direct %v (path %s), want direct %v", na, nb, r.final.Direct, r.final.Path, tc.direct)
			}
			// Port mapping or not, nothing left for beyond the lab
			// (a log server, Tailscale's own relays or STUN).
			if sa, sb := ha.Strays(), hb.Strays(); sa+sb != 0 {
				t.Fatalf("%s ↔ %s: %d and %d packets left the homes for outside the lab", na, nb, sa, sb)
			}
		})
	}
}

// Two players behind one router reach each other directly, over their
// LAN, not through the relay.
func TestPlayersBehindOneRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs roomnetd and the CLI in namespaces")
	}
	lab := netlab.New(t)
	srv := startServer(t, lab.Public("srv"))
	home := lab.Home(netlab.Symmetric)
	a, b := home.PC("alice"), home.PC("bob")
	r := pair(t, srv, a, b, 20*time.Second)
	t.Logf("MATRIX same router: reached in %v, direct after %v, final %+v, %.0f Mbit/s", r.reached.Round(time.Millisecond), r.toDirect.Round(time.Millisecond), r.final, r.mbps)
	if !r.final.Direct || !strings.HasPrefix(r.final.Path, a.Addr.String()+":") {
		t.Fatalf("behind one router: %+v, want direct over the LAN to %s", r.final, a.Addr)
	}
}

// doctorReport is `roomnet doctor --json`.
type doctorReport struct {
	OK     bool `json:"ok"`
	Checks []struct {
		Name, Status, Summary, Advice string
	} `json:"checks"`
}

func (p *player) doctor(srv server) (int, doctorReport) {
	p.t.Helper()
	code, out := p.run("", "doctor", "--server", srv.url, "--json")
	var r doctorReport
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.Index(out, "\n")+1]), &r); err != nil {
		p.t.Fatalf("doctor output: %v\n%s", err, out)
	}
	return code, r
}

func (r doctorReport) status(name string) (status, summary string) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status, c.Summary
		}
	}
	return "", ""
}

// roomnet doctor tells each player what their network is: the server,
// the login and the relay are fine everywhere; behind an easy NAT the NAT
// is fine, behind a symmetric one it is a hard NAT (a warning: rooms are
// relayed) and the router maps no ports (a warning), unless the router
// maps ports (miniupnpd), which makes both fine; behind a network without
// UDP it says UDP does not get out; a router whose WAN MTU is below the
// room's largest packet is a warning, one at 1400 is fine; a server that
// cannot be reached fails with exit 18.
func TestDoctorTellsEachNetworkApart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs roomnetd and the CLI in namespaces")
	}
	lab := netlab.New(t)
	srv := startServer(t, lab.Public("srv"))
	for _, tc := range []struct {
		nat                    netlab.NAT
		mapPorts               bool
		mtu                    int // the router's WAN MTU; 0: 1500
		udp, natCheck, portmap string
		mtuCheck               string
		words                  string
	}{
		{nat: netlab.Easy, udp: "ok", natCheck: "ok", portmap: "ok", mtuCheck: "ok", words: "easy NAT"},
		{nat: netlab.Symmetric, udp: "ok", natCheck: "warn", portmap: "warn", mtuCheck: "ok", words: "hard NAT"},
		{nat: netlab.Symmetric, mapPorts: true, udp: "ok", natCheck: "ok", portmap: "ok", mtuCheck: "ok", words: "maps ports (UPnP, NAT-PMP, PCP)"},
		{nat: netlab.NoUDP, udp: "warn", natCheck: "skip", portmap: "skip", mtuCheck: "skip", words: "UDP does not get out"},
		{nat: netlab.Easy, mtu: 1400, udp: "ok", natCheck: "ok", portmap: "ok", mtuCheck: "ok", words: "packets of 1400 bytes reach the relay"},
		{nat: netlab.Easy, mtu: 1300, udp: "ok", natCheck: "ok", portmap: "ok", mtuCheck: "warn", words: "only packets up to 1300 bytes"},
	} {
		home := lab.Home(tc.nat)
		kind := string(tc.nat)
		if tc.mapPorts {
			home.MapPorts()
			kind += "+upnp"
		}
		if tc.mtu != 0 {
			home.SetMTU(tc.mtu)
			kind += fmt.Sprint(tc.mtu)
		}
		p := newPlayer(t, home.PC("d-"+kind), srv, "doc"+strings.NewReplacer("-", "", "+", "").Replace(kind))
		if code, out := p.run("password-"+p.name+"\n", "login", "--server", srv.url, "--username", p.name, "--password-stdin"); code != 0 {
			t.Fatalf("login: %d %s", code, out)
		}
		code, r := p.doctor(srv)
		t.Logf("doctor behind %s: exit %d %+v", kind, code, r)
		for name, want := range map[string]string{"server": "ok", "login": "ok", "relays": "ok", "udp": tc.udp, "nat": tc.natCheck, "portmap": tc.portmap, "mtu": tc.mtuCheck} {
			if got, summary := r.status(name); got != want {
				t.Errorf("behind %s: %s is %q (%s), want %q", kind, name, got, summary, want)
			}
		}
		all := fmt.Sprint(r.Checks)
		if code != 0 || !r.OK || !strings.Contains(all, tc.words) {
			t.Errorf("behind %s: exit %d ok %v, want 0, true and %q in %s", kind, code, r.OK, tc.words, all)
		}
	}
	// A server nobody can reach: the first check fails and says so.
	p := newPlayer(t, lab.Home(netlab.Easy).PC("d-nosrv"), srv, "docnosrv")
	code, out := p.run("", "doctor", "--server", "http://"+netlab.Unrouted+":8080", "--timeout", "1s")
	if code != 18 || !strings.Contains(out, "fail  server   cannot reach") {
		t.Fatalf("doctor against no server: exit %d\n%s", code, out)
	}
}

package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/redistest"
	"github.com/roomnet/roomnet/roomnet"
)

// envRequireHAProxy makes a missing haproxy a failure instead of a skip
// (.ci/run installs it).
const envRequireHAProxy = "ROOMNET_TEST_REQUIRE_HAPROXY"

// shippedConfig is deploy/haproxy.cfg with its bind line and its server
// lines replaced: everything else is the file we ship.
func shippedConfig(t *testing.T, listen string, nodes []*node) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/haproxy.cfg")
	require.NoError(t, err)
	cfg := string(b)
	bind := regexp.MustCompile(`(?m)^\tbind :80$`)
	require.Len(t, bind.FindAllString(cfg, -1), 1, "deploy/haproxy.cfg: one `bind :80` line")
	cfg = bind.ReplaceAllString(cfg, "\tbind "+listen)
	servers := regexp.MustCompile(`(?m)^\tserver node\d+ \S+\n`)
	require.Len(t, servers.FindAllString(cfg, -1), 3, "deploy/haproxy.cfg: three example server lines")
	var lines strings.Builder
	for i, n := range nodes {
		fmt.Fprintf(&lines, "\tserver node%d %s\n", i+1, n.addr)
	}
	first := true
	cfg = servers.ReplaceAllStringFunc(cfg, func(string) string {
		if first {
			first = false
			return lines.String()
		}
		return ""
	})
	return cfg
}

// haproxy runs haproxy in the foreground with cfg; its log (one line per
// request, naming the server) goes to a file.
type haproxy struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

func startHAProxy(t *testing.T, cfg string) *haproxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv(envRequireHAProxy) != "" {
				t.Fatalf("haproxy not found and %s is set", envRequireHAProxy)
			}
			t.Skip("haproxy not installed (apt-get install haproxy): skipping")
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "haproxy -c: %s", out)
	h := &haproxy{logPath: filepath.Join(dir, "haproxy.log"), done: make(chan struct{})}
	logf, err := os.Create(h.logPath)
	require.NoError(t, err)
	h.cmd = exec.Command(bin, "-db", "-f", path)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, h.cmd.Start())
	go func() { _ = h.cmd.Wait(); logf.Close(); close(h.done) }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.done
		}
	})
	return h
}

func (h *haproxy) log() string {
	b, _ := os.ReadFile(h.logPath)
	return string(b)
}

// from returns an HTTP client whose connections leave from the loopback
// address ip (all of 127.0.0.0/8 is the loopback interface), with extra
// headers on every request.
func from(ip string, header map[string]string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	return &http.Client{Timeout: 30 * time.Second, Transport: headerTransport{tr, header}}
}

type headerTransport struct {
	rt     http.RoundTripper
	header map[string]string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header.Set(k, v)
	}
	return h.rt.RoundTrip(r)
}

// Two real roomnetd processes on one PostgreSQL and one Redis behind a
// real haproxy running deploy/haproxy.cfg: REST lands on both nodes, the
// client address roomnetd keys its limits by is the real client's (not
// haproxy's, not a forged X-Forwarded-For), chat WebSockets on both
// nodes talk to each other through the proxy, an oversized body is
// refused at the edge, and when one node is killed with SIGKILL new
// requests go to the survivor and its chat client reconnects there and
// catches up without losing an acknowledged message.
func TestHAProxyInFrontOfTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two roomnetd processes and haproxy")
	}
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("several nodes share PostgreSQL: set %s", dbtest.EnvPostgres)
	}
	rs := redistest.Start(t)
	const loginBudget = 6
	cc := clusterConfig{dsn: dsn, redisURL: rs.URL(), extra: []string{
		"--trusted-proxies", "127.0.0.1/32", // haproxy connects from 127.0.0.1
		"--auth-login-per-minute", fmt.Sprint(loginBudget),
	}}
	a := startNode(t, "node1", cc)
	b := startNode(t, "node2", cc)
	nodes := []*node{a, b}
	listen := freePort(t)
	lb := startHAProxy(t, shippedConfig(t, listen, nodes))
	base := "http://" + listen
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	eventually(t, 20*time.Second, "haproxy serving", func() error {
		select {
		case <-lb.done:
			t.Fatalf("haproxy exited:\n%s", lb.log())
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	// Both servers up in haproxy's checks (rise 2, inter 1s).
	time.Sleep(2500 * time.Millisecond)

	// REST through haproxy lands on both nodes. Every user signs up from
	// its own client address: the login budget is per address.
	var users []*roomnet.Client
	for i := range 6 {
		c := roomnet.NewClient(base).WithHTTPClient(from(fmt.Sprintf("127.0.1.%d", i+1), nil))
		users = append(users, user(t, ctx, c, fmt.Sprintf("player%d", i)))
	}
	for _, n := range nodes {
		v, err := n.metric("roomnet_http_requests_total", `route="/api/v1/auth/`, `code="20`)
		require.NoError(t, err)
		require.Positive(t, v, "no sign-up or login through haproxy reached %s; haproxy log:\n%s", n.name, lb.log())
	}
	require.Contains(t, lb.log(), "roomnetd/node1 ")
	require.Contains(t, lb.log(), "roomnetd/node2 ")

	// The client address roomnetd sees is the real one. 127.0.2.1 spends
	// the shared login budget (spread over both nodes) with a forged
	// X-Forwarded-For; the forgery does not give it a fresh budget, and
	// 127.0.2.2 still has all of its own: roomnetd keyed both by the
	// address haproxy appended, not by haproxy's own.
	forger := roomnet.NewClient(base).WithHTTPClient(from("127.0.2.1", map[string]string{"X-Forwarded-For": "203.0.113.9"}))
	refused := -1
	start := time.Now()
	for i := range loginBudget + 4 {
		_, _, err := forger.Login(ctx, "player0", "wrong password")
		if isStatus(err, http.StatusTooManyRequests) {
			refused = i
			break
		}
		require.True(t, isStatus(err, http.StatusUnauthorized), "attempt %d: %v", i, err)
	}
	// The bucket refills one login every minute/loginBudget: on a slow
	// machine the attempts themselves may earn one or two back.
	refills := int(time.Since(start) / (time.Minute / loginBudget))
	require.GreaterOrEqual(t, refused, loginBudget, "refused before the budget of one address was spent")
	require.LessOrEqual(t, refused, loginBudget+refills, "the budget of one address over both nodes (%d refills in %s)", refills, time.Since(start))
	forger2 := roomnet.NewClient(base).WithHTTPClient(from("127.0.2.1", map[string]string{"X-Forwarded-For": "198.51.100.7"}))
	_, _, err := forger2.Login(ctx, "player0", "password-player0")
	require.True(t, isStatus(err, http.StatusTooManyRequests), "a forged X-Forwarded-For escaped the limit: %v", err)
	honest := roomnet.NewClient(base).WithHTTPClient(from("127.0.2.2", nil))
	_, _, err = honest.Login(ctx, "player0", "password-player0")
	require.NoError(t, err, "another client address has its own budget")

	// A declared body over the limit is refused by haproxy before it is sent.
	conn, err := net.DialTimeout("tcp", listen, 5*time.Second)
	require.NoError(t, err)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = fmt.Fprintf(conn, "POST /api/v1/auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", listen, 300<<10)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	conn.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	// Chat: two members of a room, one socket on each node (leastconn).
	// Rooms live in Headscale: a deployment points every node at one
	// (headscale.mode external); these nodes each embed their own, so the
	// room is created and joined on node1 directly.
	host, guest := users[0], users[1]
	onA := func(c *roomnet.Client) *roomnet.Client { return roomnet.NewClient(a.URL()).WithToken(c.Token()) }
	room, err := onA(host).CreateRoom(ctx, roomnet.CreateRoom{Name: "behind haproxy", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = onA(guest).Join(ctx, room.ID, "")
	require.NoError(t, err)
	conv := chat.RoomConv(room.ID)
	dial := func(c *roomnet.Client) *member {
		cl, err := chatclient.Dial(ctx, chatclient.Options{
			URL: "ws://" + listen + "/ws", Token: c.Token(),
			SendBackoff: chatclient.Backoff{Initial: 200 * time.Millisecond, Factor: 1.5, Max: time.Second, Jitter: 0.2},
			MaxAttempts: 100, SyncEvery: time.Second,
		})
		require.NoError(t, err)
		t.Cleanup(func() { cl.Close() })
		me, err := c.Me(ctx)
		require.NoError(t, err)
		return &member{name: me.Username, conv: conv, cl: cl, got: collect(cl)}
	}
	sockets := func() (on [2]float64) {
		for i, n := range nodes {
			v, err := n.metric("roomnet_chat_connections")
			require.NoError(t, err)
			on[i] = v
		}
		return on
	}
	hm := dial(host)
	// leastconn counts HAProxy's kept-alive API connections too, so the
	// guest's socket may land beside the host's: dial again until it is
	// on the other node.
	var gm *member
	for attempt := 1; ; attempt++ {
		gm = dial(guest)
		on := sockets()
		if on == [2]float64{1, 1} {
			break
		}
		require.Less(t, attempt, 10, "the guest's chat socket never landed on the other node: sockets %v", on)
		gm.cl.Close()
		eventually(t, 10*time.Second, "the extra socket closed", func() error {
			if on := sockets(); on[0]+on[1] != 1 {
				return fmt.Errorf("sockets %v", on)
			}
			return nil
		})
	}
	members := []*member{hm, gm}

	acks := newAcked()
	send := func(m *member, body string) {
		t.Helper()
		p := m.cl.Send(conv, body)
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatalf("%s: %q never resolved", m.name, body)
		}
		seq, err := p.Result()
		require.NoError(t, err, "%s: %q", m.name, body)
		require.NoError(t, acks.add(conv, seq, p.ClientMsgID, body))
	}
	for i := range 10 {
		send(hm, fmt.Sprint("host ", i))
		send(gm, fmt.Sprint("guest ", i))
	}
	checkDelivered(t, members, acks, 15*time.Second)
	require.False(t, t.Failed())

	// Kill node1 with sends in flight from both sides.
	var pending []*chatclient.Pending
	for i := range 10 {
		pending = append(pending, hm.cl.Send(conv, fmt.Sprint("host in flight ", i)), gm.cl.Send(conv, fmt.Sprint("guest in flight ", i)))
	}
	a.kill()
	killed := time.Now()
	// New requests go to the survivor at once (a refused connection is
	// retried on another node) and keep going after haproxy marks node1 down.
	for i := range 8 {
		c := roomnet.NewClient(base).WithHTTPClient(from(fmt.Sprintf("127.0.3.%d", i+1), nil))
		user(t, ctx, c, fmt.Sprintf("late%d", i))
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("8 sign-ups after the kill, all answered, the last %v after it", time.Since(killed))
	for _, p := range pending {
		select {
		case <-p.Done():
		case <-time.After(60 * time.Second):
			t.Fatalf("a send in flight at the kill never resolved: %q", p.Body)
		}
		seq, err := p.Result()
		require.NoError(t, err, "%q", p.Body)
		require.NoError(t, acks.add(conv, seq, p.ClientMsgID, p.Body))
	}
	for i := range 5 {
		send(hm, fmt.Sprint("host after ", i))
		send(gm, fmt.Sprint("guest after ", i))
	}
	v, err := b.metric("roomnet_chat_connections")
	require.NoError(t, err)
	require.Equal(t, float64(2), v, "both chat sockets on the survivor")
	checkDelivered(t, members, acks, 30*time.Second)
	checkStored(t, dsn, []string{conv}, acks)
	var reconnects int
	for _, m := range members {
		reconnects += m.cl.Stats().Reconnects
	}
	require.Positive(t, reconnects, "the client on the killed node reconnected")

	// node1 restarted: haproxy takes it back (rise 2) and new requests reach it.
	a.start()
	eventually(t, 20*time.Second, "requests on the restarted node", func() error {
		c := roomnet.NewClient(base).WithHTTPClient(from("127.0.4.1", nil))
		if _, err := c.Me(ctx); !isStatus(err, http.StatusUnauthorized) {
			return fmt.Errorf("anonymous /me answered %v", err)
		}
		v, err := a.metric("roomnet_http_requests_total", `route="/api/v1/me"`)
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("none on node1 yet")
		}
		return nil
	})
}

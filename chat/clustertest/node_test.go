package clustertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/controlplane/headscale/embedded"
	"github.com/roomnet/roomnet/internal/redisconn"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnetd"
)

// envNode makes the re-executed test binary a roomnetd node.
const envNode = "ROOMNET_CLUSTERTEST_NODE"

const adminPassword = "admin-password-for-cluster-tests"

func TestMain(m *testing.M) {
	embedded.MaybeRunChild() // a node's embedded Headscale
	if os.Getenv(envNode) == "1" {
		if err := runNode(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "roomnetd node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runNode is cmd/roomnetd's main: config from flags, JSON logs on
// stderr, SIGTERM for a graceful stop.
func runNode(args []string) error {
	cfg, err := config.Load(args, func(string) (string, bool) { return "", false }, os.Stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	redisconn.RouteLogs(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := roomnetd.Start(ctx, cfg, roomnetd.Options{Logger: log, Out: io.Discard, APIRequestsPerSec: 100000})
	if err != nil {
		return err
	}
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// node is one roomnetd process. It keeps its ports and data directory
// across restarts, as a machine does.
type node struct {
	t       *testing.T
	name    string
	args    []string
	addr    string // API host:port
	metrics string // metrics host:port
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	starts  int
}

// cluster settings shared by every node.
type clusterConfig struct {
	dsn, redisURL string
	extra         []string // more flags
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode starts a roomnetd process and waits until /healthz answers.
func startNode(t *testing.T, name string, cc clusterConfig) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, name: name, addr: freePort(t), metrics: freePort(t), logPath: filepath.Join(dir, "roomnetd.log")}
	n.args = append([]string{
		"--listen", n.addr,
		"--data-dir", filepath.Join(dir, "data"),
		"--database-driver", "postgres", "--database-dsn", cc.dsn,
		"--redis-url", cc.redisURL,
		"--metrics-listen", n.metrics,
		"--headscale-listen", "127.0.0.1:0",
		"--derp-listen", "127.0.0.1:0", "--derp-stun-listen", "127.0.0.1:0",
		"--admin-password", adminPassword,
		"--rooms-max-per-user", "100",
		"--log-level", "info", "--log-format", "json",
	}, cc.extra...)
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) URL() string   { return "http://" + n.addr }
func (n *node) WSURL() string { return "ws://" + n.addr + "/ws" }

func (n *node) start() {
	n.t.Helper()
	self, err := os.Executable()
	if err != nil {
		n.t.Fatal(err)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	n.starts++
	fmt.Fprintf(logf, "{\"msg\":\"clustertest: start %d of %s\"}\n", n.starts, n.name)
	cmd := exec.Command(self, n.args...)
	cmd.Env = append(os.Environ(), envNode+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatalf("starting %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.cmd, n.done = cmd, done
	deadline := time.Now().Add(120 * time.Second)
	for {
		resp, err := http.Get(n.URL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			n.t.Fatalf("%s exited while starting; its log:\n%s", n.name, n.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not healthy after 120s (%v); its log:\n%s", n.name, err, n.tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL, as a crash of its machine would.
func (n *node) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// restart starts the node again on the same ports and data directory.
func (n *node) restart() {
	n.t.Helper()
	n.kill()
	n.start()
}

// stop asks for a graceful stop and kills after 30 s.
func (n *node) stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.t.Errorf("%s did not stop within 30s of SIGTERM", n.name)
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
	n.cmd = nil
}

// tail returns the last lines of the node's log.
func (n *node) tail(lines int) string {
	b, _ := os.ReadFile(n.logPath)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// metric sums the samples of name whose labels contain every one of
// match (`route="/api/v1/auth/login"`, …) on the node's /metrics.
func (n *node) metric(name string, match ...string) (float64, error) {
	resp, err := http.Get("http://" + n.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, m := range match {
			if !strings.Contains(line, m) {
				continue lines
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
		found = true
	}
	if !found {
		return 0, nil
	}
	return sum, sc.Err()
}

// eventually retries f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// user registers name through base and returns a client signed in as it.
func user(t *testing.T, ctx context.Context, c *roomnet.Client, name string) *roomnet.Client {
	t.Helper()
	if _, err := c.Register(ctx, name, "password-"+name); err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	signed, _, err := c.Login(ctx, name, "password-"+name)
	if err != nil {
		t.Fatalf("logging in %s: %v", name, err)
	}
	return signed
}

func isStatus(err error, code int) bool {
	var e *roomnet.Error
	return errors.As(err, &e) && e.Status == code
}

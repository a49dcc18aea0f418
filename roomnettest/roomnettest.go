// Package roomnettest starts a whole roomnetd in-process on loopback
// ephemeral ports in a temporary directory, with its real embedded
// Headscale (a child process: the test binary re-executed) and real DERP
// relay, and hands back SDK clients. Tests add real tsnet nodes with Node.
//
// Every package that uses it must have
//
//	func TestMain(m *testing.M) { roomnettest.Main(m) }
package roomnettest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/envknob"

	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/controlplane/headscale/embedded"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnetd"
)

// AdminPassword is the harness admin's password.
const AdminPassword = "admin-password-for-tests"

// Main is the TestMain of packages that start servers: the test binary
// doubles as the embedded Headscale child, and tsnet nodes are kept on
// loopback (DERP forced, network assumed up, no logs, no port mapper).
func Main(m *testing.M) { MainWith(m, nil) }

// MainWith is Main with package set-up that runs only in the real test
// process (not in the Headscale child); it returns its tear-down.
func MainWith(m *testing.M, setup func() (teardown func())) {
	embedded.MaybeRunChild()
	node.Harden()
	node.NoPortMapper()
	envknob.Setenv("TS_DEBUG_NEVER_DIRECT_UDP", "true")
	envknob.Setenv("TS_ASSUME_NETWORK_UP_FOR_TEST", "1")
	teardown := func() {}
	if setup != nil {
		teardown = setup()
	}
	code := m.Run()
	teardown()
	os.Exit(code)
}

// Harness is a running roomnetd with an admin client.
type Harness struct {
	Server *roomnetd.Server
	Config config.Config
	URL    string
	Admin  *roomnet.Client
	t      testing.TB
	set    Settings
}

// Settings are what an Option may change before the server starts.
type Settings struct {
	Config config.Config
	Server roomnetd.Options
}

// Option adjusts the harness's settings before start.
type Option func(*Settings)

// Logger returns the logger tests use: warnings and errors on stderr, or
// everything with ROOMNET_TEST_LOG=debug.
func Logger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("ROOMNET_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Config returns the harness's base config for dir.
func Config(dir string) config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Headscale.Listen = "127.0.0.1:0"
	cfg.DERP.Listen = "127.0.0.1:0"
	cfg.DERP.STUNListen = "127.0.0.1:0"
	cfg.Auth.AdminPassword = AdminPassword
	cfg.Auth.LoginPerMinute = 100000
	cfg.Rooms.MaxRoomsPerUser = 100
	return cfg
}

// New starts a roomnetd and stops it when the test ends.
func New(t testing.TB, opts ...Option) *Harness {
	t.Helper()
	set := Settings{
		Config: Config(t.TempDir()),
		Server: roomnetd.Options{Logger: Logger(), Out: io.Discard, APIRequestsPerSec: 100000},
	}
	for _, o := range opts {
		o(&set)
	}
	cfg := set.Config
	if err := cfg.Finish(); err != nil {
		t.Fatalf("harness config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv, err := roomnetd.Start(ctx, cfg, set.Server)
	if err != nil {
		t.Fatalf("starting roomnetd: %v", err)
	}
	h := &Harness{Server: srv, Config: cfg, URL: srv.URL(), t: t, set: set}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Server.Shutdown(ctx); err != nil {
			t.Errorf("shutting roomnetd down: %v", err)
		}
	})
	admin, _, err := roomnet.NewClient(h.URL).Login(ctx, cfg.Auth.AdminUsername, AdminPassword)
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	h.Admin = admin
	return h
}

// Restart stops the server and starts it again on the same API address
// and data directory, as after a crash or an upgrade.
func (h *Harness) Restart() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := h.Server.Shutdown(ctx); err != nil {
		h.t.Fatalf("stopping roomnetd for a restart: %v", err)
	}
	cfg := h.Config
	cfg.Listen = strings.TrimPrefix(h.URL, "http://")
	srv, err := roomnetd.Start(ctx, cfg, h.set.Server)
	if err != nil {
		h.t.Fatalf("restarting roomnetd: %v", err)
	}
	h.Server = srv
}

// Anon returns a client without a token.
func (h *Harness) Anon() *roomnet.Client { return roomnet.NewClient(h.URL) }

// User registers name and returns a client signed in as it.
func (h *Harness) User(name string) *roomnet.Client {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := h.Anon()
	if _, err := c.Register(ctx, name, "password-"+name); err != nil {
		h.t.Fatalf("registering %s: %v", name, err)
	}
	c, _, err := c.Login(ctx, name, "password-"+name)
	if err != nil {
		h.t.Fatalf("logging in %s: %v", name, err)
	}
	return c
}

// StartNode brings a tsnet node up with grant; it is closed when the test
// ends. Failure to come up is returned, not fatal, so tests can assert it.
func StartNode(t testing.TB, grant roomnet.JoinGrant, hostname string, timeout time.Duration) (*node.Node, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n, err := node.Start(ctx, node.Options{
		Dir:      filepath.Join(t.TempDir(), hostname),
		Hostname: hostname,
		Grant:    grant,
		Logf:     nodeLogf(hostname),
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	return n, nil
}

// Node is StartNode that fails the test when the node does not come up.
func Node(t testing.TB, grant roomnet.JoinGrant, hostname string) *node.Node {
	t.Helper()
	n, err := StartNode(t, grant, hostname, 60*time.Second)
	if err != nil {
		t.Fatalf("node %s: %v", hostname, err)
	}
	return n
}

func nodeLogf(name string) func(string, ...any) {
	if os.Getenv("ROOMNET_TEST_LOG") != "debug" {
		return func(string, ...any) {}
	}
	return func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s [%s] %s\n", time.Now().Format("15:04:05.000"), name, fmt.Sprintf(format, args...))
	}
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

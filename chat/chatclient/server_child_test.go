package chatclient_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnetd"
	"github.com/roomnet/roomnet/roomnettest"
)

// A roomnetd in a child process (this test binary re-executed), so that
// a test can kill it abruptly: no shutdown, no close frames, no flush,
// as after a crash or an OOM kill; or stop it with SIGTERM, as for an
// upgrade.
const (
	envChildDir        = "ROOMNET_TEST_CHILD_DIR"
	envChildListen     = "ROOMNET_TEST_CHILD_LISTEN"
	envChildSendPerSec = "ROOMNET_TEST_CHILD_SEND_PER_SEC"
	childURLPrefix     = "ROOMNET_TEST_CHILD_URL="
)

// runServerChild runs the child's server when this process is one; it
// never returns then.
func runServerChild() {
	dir := os.Getenv(envChildDir)
	if dir == "" {
		return
	}
	cfg := roomnettest.Config(dir)
	cfg.Listen = os.Getenv(envChildListen)
	if v, err := strconv.ParseFloat(os.Getenv(envChildSendPerSec), 64); err == nil && v > 0 {
		cfg.Chat.SendPerSec = v
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "server child:", err)
		os.Exit(2)
	}
	if err := cfg.Finish(); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	srv, err := roomnetd.Start(ctx, cfg, roomnetd.Options{Logger: roomnettest.Logger(), Out: io.Discard, APIRequestsPerSec: 100000})
	if err != nil {
		fail(err)
	}
	fmt.Println(childURLPrefix + srv.URL())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fail(err)
	}
	os.Exit(0)
}

// childServer is a roomnetd in a child process on a fixed address.
type childServer struct {
	t          testing.TB
	dir        string
	sendPerSec float64
	URL        string
	cmd        *exec.Cmd
}

// startChild starts a child server with its data in dir; it is stopped
// when the test ends.
func startChild(t testing.TB, sendPerSec float64) *childServer {
	t.Helper()
	c := &childServer{t: t, dir: t.TempDir(), sendPerSec: sendPerSec}
	c.start("127.0.0.1:0")
	t.Cleanup(func() { c.stop(false) })
	return c
}

func (c *childServer) start(listen string) {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildDir+"="+c.dir, envChildListen+"="+listen,
		envChildSendPerSec+"="+strconv.FormatFloat(c.sendPerSec, 'f', -1, 64))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting the server child: %v", err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), childURLPrefix); ok {
				urls <- u
			}
		}
		close(urls)
	}()
	select {
	case u, ok := <-urls:
		if !ok {
			_ = cmd.Wait()
			c.t.Fatalf("the server child ended before serving: %v", cmd.ProcessState)
		}
		c.URL = u
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		c.t.Fatal("the server child did not start in 90s")
	}
	c.cmd = cmd
}

// stop ends the child: SIGKILL when abrupt, else SIGTERM and a shutdown.
func (c *childServer) stop(abrupt bool) {
	if c.cmd == nil {
		return
	}
	if abrupt {
		_ = c.cmd.Process.Kill()
	} else {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	err := c.cmd.Wait()
	if !abrupt && err != nil {
		c.t.Errorf("the server child's shutdown: %v", err)
	}
	c.cmd = nil
}

// restart stops the child (killed when abrupt) and starts it again on
// the same address and data.
func (c *childServer) restart(abrupt bool) {
	c.t.Helper()
	c.stop(abrupt)
	c.start(strings.TrimPrefix(c.URL, "http://"))
}

func (c *childServer) wsURL() string { return "ws" + strings.TrimPrefix(c.URL, "http") + "/ws" }

// user registers name and returns a client signed in as it.
func (c *childServer) user(ctx context.Context, name string) *roomnet.Client {
	c.t.Helper()
	cl := roomnet.NewClient(c.URL)
	if _, err := cl.Register(ctx, name, "password-"+name); err != nil {
		c.t.Fatalf("registering %s: %v", name, err)
	}
	cl, _, err := cl.Login(ctx, name, "password-"+name)
	if err != nil {
		c.t.Fatalf("logging in %s: %v", name, err)
	}
	return cl
}

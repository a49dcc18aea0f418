// Package redistest runs a real redis-server for tests: a private
// instance on a free loopback port in a temporary directory, with no
// persistence, that a test can restart (empty, as after a crash without
// persistence) or flush. Tests skip when redis-server is not installed,
// unless ROOMNET_TEST_REQUIRE_REDIS is set (as .ci/run does), and then fail.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// EnvRequire makes a missing redis-server a failure instead of a skip.
const EnvRequire = "ROOMNET_TEST_REQUIRE_REDIS"

// Server is one redis-server child process.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server for the test and stops it at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(EnvRequire) != "" {
			t.Fatalf("redis-server not found and %s is set", EnvRequire)
		}
		t.Skip("redis-server not installed (apt-get install redis-server): skipping")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// URL is a redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin,
		"--bind", "127.0.0.1", "--port", fmt.Sprint(s.port),
		"--dir", s.dir, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
	)
	// Its log (a warning about overcommit on every start) stays out of
	// the test output; the readiness check below reports failures.
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not ready: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart kills the server and starts an empty one on the same port:
// everything it held is gone, as after a crash of a server without
// persistence or a failover to a replica that had nothing.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Do sends one command in Redis's inline form and returns the first line
// of the reply (for FLUSHALL, DEBUG and the like in tests).
func (s *Server) Do(args ...string) string {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		s.t.Fatalf("dialing redis: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		s.t.Fatalf("writing to redis: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		s.t.Fatalf("reading from redis: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// Flush empties every database (FLUSHALL).
func (s *Server) Flush() {
	s.t.Helper()
	if got := s.Do("FLUSHALL"); got != "+OK" {
		s.t.Fatalf("FLUSHALL answered %q", got)
	}
}

func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

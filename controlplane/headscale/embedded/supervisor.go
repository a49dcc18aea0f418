// Package embedded runs Headscale as a supervised child process of
// roomnetd: the same binary re-executed, configured from a file roomnetd
// writes, health-checked over its unix socket, restarted on crash and
// stopped by signal. Headscale's global config, logger and signal handling
// stay inside the child.
package embedded

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/roomnet/roomnet/controlplane/headscale"
)

// Options configures the embedded Headscale.
type Options struct {
	Dir               string // its own data directory; made 0700
	Listen            string // HTTP listen address
	ServerURL         string // login server URL handed to nodes
	DERPMapPath       string // YAML DERP map file
	DERPMapRefresh    time.Duration
	EphemeralTimeout  time.Duration
	BatchDelay        time.Duration
	StoreBatchTimeout time.Duration
	Debug             bool
	Logger            *slog.Logger
	StartTimeout      time.Duration // default 60s
}

// Supervisor owns the child process.
type Supervisor struct {
	opts       Options
	configPath string
	client     *headscale.Client
	log        *slog.Logger

	ready    atomic.Bool
	restarts atomic.Int64

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current child has exited

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Start writes the config, starts the child and waits until Headscale
// answers its health check.
func Start(ctx context.Context, o Options) (*Supervisor, error) {
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.DERPMapRefresh == 0 {
		o.DERPMapRefresh = time.Minute
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating headscale dir: %w", err)
	}
	if err := os.Chmod(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("securing headscale dir: %w", err)
	}
	// The database 0600 before SQLite opens it (its WAL and SHM files take
	// its mode); the child also runs with umask 077.
	db, err := os.OpenFile(filepath.Join(o.Dir, "headscale.db"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating headscale database: %w", err)
	}
	db.Close()
	path, err := writeConfig(o)
	if err != nil {
		return nil, err
	}
	client, err := headscale.DialSocket(SocketPath(o.Dir))
	if err != nil {
		return nil, err
	}
	s := &Supervisor{
		opts:       o,
		configPath: path,
		client:     client,
		log:        o.Logger.With("component", "headscale"),
		stop:       make(chan struct{}),
	}
	if err := s.startChild(); err != nil {
		client.Close()
		return nil, err
	}
	if err := s.waitHealthy(ctx, o.StartTimeout); err != nil {
		s.Close()
		return nil, err
	}
	s.ready.Store(true)
	s.wg.Add(1)
	go s.supervise()
	return s, nil
}

// Client returns the gRPC client of the embedded Headscale.
func (s *Supervisor) Client() *headscale.Client { return s.client }

// Ready reports whether the child is up and answered its last health check.
func (s *Supervisor) Ready() bool { return s.ready.Load() }

// Restarts counts restarts after crashes.
func (s *Supervisor) Restarts() int64 { return s.restarts.Load() }

// PID returns the current child's process id (0 when none runs).
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Supervisor) startChild() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	// A stale socket from a crashed child would make the new one fail.
	_ = os.Remove(SocketPath(s.opts.Dir))
	cmd := exec.Command(exe)
	cmd.Env = []string{
		childEnv + "=" + childEnvValue,
		childConfigEnv + "=" + s.configPath,
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.opts.Dir,
		"TMPDIR=" + os.TempDir(),
	}
	cmd.Dir = s.opts.Dir
	cmd.SysProcAttr = sysProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("piping headscale output: %w", err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting headscale: %w", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	s.log.Info("headscale started", "pid", cmd.Process.Pid, "listen", s.opts.Listen)
	go func() {
		s.relayLogs(stderr)
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// relayLogs re-logs Headscale's JSON lines through slog. Headscale's info
// is our debug: it is chatty, and its warnings and errors still show.
func (s *Supervisor) relayLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			s.log.Info(sc.Text())
			continue
		}
		msg, _ := line["message"].(string)
		level := slog.LevelDebug
		switch line["level"] {
		case "warn":
			level = slog.LevelWarn
		case "error", "fatal", "panic":
			level = slog.LevelError
		}
		if expectedError(msg, line) {
			level = slog.LevelDebug
		}
		attrs := make([]any, 0, 2*len(line))
		for k, v := range line {
			if k == "message" || k == "level" || k == "time" {
				continue
			}
			attrs = append(attrs, k, v)
		}
		s.log.Log(context.Background(), level, msg, attrs...)
	}
}

// expectedError reports Headscale errors that are the normal course of
// roomnet's work. A node that leaves, is kicked or whose room closes is
// deleted through the API while its map stream is still open; when the
// stream then ends, Headscale tries to mark the node offline and logs
// "failed to disconnect node" with "node not found". Any other error of
// that message still shows.
func expectedError(msg string, line map[string]any) bool {
	if msg != "failed to disconnect node" {
		return false
	}
	err, _ := line["error"].(string)
	return strings.HasPrefix(err, "node not found")
}

func (s *Supervisor) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	var lastErr error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = s.client.Health(cctx)
		ccancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("headscale exited during start (see its log lines above)")
		case <-ctx.Done():
			return fmt.Errorf("waiting for headscale: %w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// supervise restarts the child when it dies and health-checks it.
func (s *Supervisor) supervise() {
	defer s.wg.Done()
	backoff := time.Second
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := s.client.Health(ctx)
			cancel()
			s.ready.Store(err == nil)
			if err != nil {
				s.log.Warn("headscale health check failed", "err", err)
			}
			continue
		case <-done:
		}
		s.ready.Store(false)
		s.log.Error("headscale exited unexpectedly; restarting", "backoff", backoff)
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		if err := s.startChild(); err != nil {
			s.log.Error("restarting headscale", "err", err)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := s.waitHealthy(ctx, s.opts.StartTimeout)
		cancel()
		if err != nil {
			s.log.Error("restarted headscale is not healthy", "err", err)
			continue
		}
		s.restarts.Add(1)
		s.ready.Store(true)
		backoff = time.Second
		s.log.Info("headscale restarted and healthy")
	}
}

// Close stops supervision, asks the child to stop (SIGTERM), waits for it
// and kills it after a grace period.
func (s *Supervisor) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	s.ready.Store(false)
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	var err error
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			s.log.Warn("headscale did not stop in time; killing it")
			_ = cmd.Process.Kill()
			<-done
			err = errors.New("headscale killed after shutdown timeout")
		}
	}
	if cerr := s.client.Close(); err == nil {
		err = cerr
	}
	return err
}

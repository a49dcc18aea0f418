package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/juanfont/headscale/hscontrol"
	"github.com/juanfont/headscale/hscontrol/types"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
)

const (
	childEnv       = "ROOMNET_CHILD"
	childEnvValue  = "headscale"
	childConfigEnv = "ROOMNET_HEADSCALE_CONFIG"
)

// MaybeRunChild turns this process into the embedded Headscale when the
// supervisor started it as such, and never returns in that case. main and
// the TestMain of every package that starts a roomnetd call it first.
func MaybeRunChild() {
	if os.Getenv(childEnv) != childEnvValue {
		return
	}
	if err := runChild(os.Getenv(childConfigEnv)); err != nil {
		fmt.Fprintf(os.Stderr, `{"level":"error","message":%q}`+"\n", err.Error())
		os.Exit(1)
	}
	os.Exit(0)
}

// stopWatcher passes Headscale's log lines through and notices the line
// that Serve logs once its graceful shutdown is complete: Serve itself
// never returns after SIGTERM.
type stopWatcher struct {
	w       io.Writer
	once    sync.Once
	stopped chan struct{}
}

func (s *stopWatcher) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"Headscale stopped"`)) {
		s.once.Do(func() { close(s.stopped) })
	}
	return s.w.Write(p)
}

func runChild(configPath string) error {
	if configPath == "" {
		return errors.New("embedded headscale: no config path")
	}
	privateFiles() // this process is Headscale alone: its files are its own
	watcher := &stopWatcher{w: os.Stderr, stopped: make(chan struct{})}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	log.Logger = zerolog.New(watcher).With().Timestamp().Logger()

	if err := types.LoadConfig(configPath, true); err != nil {
		return fmt.Errorf("loading headscale config: %w", err)
	}
	cfg, err := types.LoadServerConfig()
	if err != nil {
		return fmt.Errorf("validating headscale config: %w", err)
	}
	app, err := hscontrol.NewHeadscale(cfg)
	if err != nil {
		return fmt.Errorf("creating headscale: %w", err)
	}

	// Serve handles the stop signals itself; we only need to know that one
	// came so that we can exit once its shutdown has finished.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	serveErr := make(chan error, 1)
	go func() { serveErr <- app.Serve() }()
	go exitWithParent()

	select {
	case err := <-serveErr:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving headscale: %w", err)
		}
		return nil
	case <-sigc:
	}
	select {
	case <-watcher.stopped:
	case err := <-serveErr:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving headscale: %w", err)
		}
	case <-time.After(15 * time.Second):
		return errors.New("headscale did not stop within 15s")
	}
	return nil
}

// exitWithParent ends the child when roomnetd is gone, even where the
// parent-death signal is not available.
func exitWithParent() {
	parent := os.Getppid()
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			os.Exit(2)
		}
	}
}

// Command roomnetd runs the roomnet server with embedded defaults: control
// plane REST API, embedded Headscale, DERP relay with STUN, all state in
// one data directory. It only wires: config, logger, signals, start, stop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/controlplane/headscale/embedded"
	"github.com/roomnet/roomnet/internal/redisconn"
	"github.com/roomnet/roomnet/roomnetd"
)

func main() {
	embedded.MaybeRunChild() // this process may be the embedded Headscale
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "roomnetd:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.Load(os.Args[1:], os.LookupEnv, os.Stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	redisconn.RouteLogs(log) // go-redis's process-wide logger, once
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := roomnetd.Start(ctx, cfg, roomnetd.Options{Logger: log})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

func newLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// Command roomnet-derp runs a standalone DERP relay: DERP over TLS, STUN,
// admission of nodes Headscale knows only, meshing with the region's
// other relays, and registration with the control plane so that it joins
// the DERP map while it heartbeats. It only wires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roomnet/roomnet/config"
	"github.com/roomnet/roomnet/derp/relay"
	"github.com/roomnet/roomnet/roomnet"
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "roomnet-derp:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.LoadRelay(os.Args[1:], os.LookupEnv, os.Stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var mesh []string
	if cfg.MeshWith != "" {
		mesh = strings.Split(cfg.MeshWith, ",")
	}
	srv, err := relay.Start(relay.Options{
		Listen: cfg.Listen, STUNListen: cfg.STUNListen, Hostname: cfg.Hostname,
		CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, StateDir: cfg.StateDir,
		VerifyURL: cfg.VerifyURL, MeshKey: cfg.MeshKey, MeshWith: mesh, MeshInsecure: cfg.MeshInsecure,
		RateBytesPerSec: uint64(cfg.RateBytes), RateBurstBytes: uint64(cfg.RateBurst),
		MaxConns: cfg.MaxConns, AcceptPerSec: cfg.AcceptPerSec, Logger: log,
	})
	if err != nil {
		return err
	}
	if cfg.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(srv.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		ms := &http.Server{Addr: cfg.Metrics, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := ms.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer ms.Close()
	}
	control := roomnet.NewClient(cfg.Control).WithToken(cfg.Token)
	go srv.Register(ctx, control, relay.Heartbeat{RegionID: cfg.RegionID, RegionCode: cfg.RegionCode, RegionName: cfg.RegionName, NodeName: cfg.NodeName}, cfg.Heartbeat)
	<-ctx.Done()
	log.Info("shutting down")
	return srv.Close()
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roomnet/roomnet/chat/chatserver"
	"github.com/roomnet/roomnet/internal/redisconn"
)

// benchDirectory accepts tokens "u<N>" as user N: the bench's users need
// no accounts. It is only ever served on loopback by this tool.
type benchDirectory struct{}

func (benchDirectory) Authenticate(_ context.Context, token string) (chatserver.User, error) {
	rest, ok := strings.CutPrefix(token, "u")
	id, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil || id == 0 {
		return chatserver.User{}, errors.New("bad token")
	}
	return chatserver.User{ID: id, Name: token}, nil
}
func (benchDirectory) UserByName(context.Context, string) (chatserver.User, error) {
	return chatserver.User{}, chatserver.ErrNoUser
}
func (benchDirectory) RoomsOf(context.Context, uint64) ([]string, error) { return nil, nil }

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:7100", "listen address (loopback)")
	data := fs.String("data", "", "directory for the SQLite chat store (required without -postgres)")
	pg := fs.String("postgres", "", "PostgreSQL DSN for the chat store, shared by every node of a cluster run")
	redisURL := fs.String("redis", "", "Redis URL for the sequencer and bus (a node of a cluster); empty: in-process engines")
	enter := fs.Float64("storm-enter", 100, "lobby storm mode threshold, messages/s (a huge value turns storm mode off)")
	interval := fs.Duration("notify-interval", 250*time.Millisecond, "storm notify interval")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof and /metrics on this loopback address (profiling the server under load)")
	_ = fs.Parse(args)
	driver, dsn := "postgres", *pg
	if dsn == "" {
		if *data == "" {
			return errors.New("-data or -postgres is required")
		}
		driver, dsn = "sqlite", filepath.Join(*data, "chat.db")
	}
	store, err := chatserver.OpenStore(driver, dsn)
	if err != nil {
		return err
	}
	defer store.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := chatserver.Options{
		Store: store, Directory: benchDirectory{}, Logger: log,
		// Publishers in the bench send far faster than a player may.
		SendPerSec: 100000, SendBurst: 100000, FramesPerSec: 100000, FramesBurst: 100000,
		// Thousands of clients from one loopback address, opened at once.
		MaxConnsPerAddr: -1, AcceptPerSec: -1,
		StormEnter: *enter, NotifyInterval: *interval,
		Registry: prometheus.NewRegistry(),
	}
	engines := "in-process"
	if *redisURL != "" {
		rdb, err := redisconn.Open(*redisURL)
		if err != nil {
			return err
		}
		defer rdb.Close()
		bus := chatserver.NewRedisBus(rdb, chatserver.RedisBusOptions{Logger: log})
		defer bus.Close()
		opts.Sequencer, opts.Bus = chatserver.NewRedisSequencer(rdb, store, ""), bus
		engines = "redis"
	}
	srv, err := chatserver.New(opts)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	// A moderator's critical notice, to time the priority lane.
	mux.HandleFunc("POST /announce", func(w http.ResponseWriter, r *http.Request) {
		if _, err := srv.Announce(r.Context(), r.FormValue("conv"), r.FormValue("text")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	if *pprofAddr != "" {
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pm.Handle("/metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
		go func() { _ = http.ListenAndServe(*pprofAddr, pm) }()
	}
	hs := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "chatload: serving on %s (storm at %.0f msg/s, %s store, %s engines)\n", *addr, *enter, driver, engines)
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

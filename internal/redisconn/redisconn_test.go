package redisconn

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
)

type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// TestClientLogsGoToSlog dials a port nobody listens on: go-redis logs the
// failed dial, and the line must reach slog (debug, component=redis), not
// stderr.
func TestClientLogsGoToSlog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rec := &recorder{}
	prev := slog.Default()
	slog.SetDefault(slog.New(rec))
	t.Cleanup(func() { slog.SetDefault(prev) })

	rdb, err := Open("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err == nil {
		t.Fatal("ping answered with nobody listening")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.recs {
		component := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "component" {
				component = a.Value.String()
			}
			return true
		})
		if component == "redis" && r.Level == slog.LevelDebug && strings.Contains(r.Message, "failed to dial") {
			return
		}
	}
	t.Fatalf("no go-redis dial failure reached slog; got %d records", len(rec.recs))
}

func TestOpenRefusesABadURL(t *testing.T) {
	if _, err := Open("http://x"); err == nil {
		t.Fatal("accepted an http URL")
	}
}

// The adapter RouteLogs installs writes to the logger it was given.
func TestAdapterWritesToItsLogger(t *testing.T) {
	rec := &recorder{}
	slogAdapter{slog.New(rec)}.Printf(context.Background(), "redis: %s: %v\n", "pool", "refused")
	if len(rec.recs) != 1 || rec.recs[0].Message != "redis: pool: refused" || rec.recs[0].Level != slog.LevelDebug {
		t.Fatalf("got %+v", rec.recs)
	}
}

package embedded

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Headscale's log lines are re-logged at our levels; the error it logs for
// every node deleted while its map stream was open (each leave, kick and
// close) is expected and goes to debug, other errors stay errors.
func TestRelayLogsLowersOnlyExpectedErrors(t *testing.T) {
	var out bytes.Buffer
	s := &Supervisor{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	lines := []string{
		// Verbatim from a CLI leave (Headscale v0.29.3, poll.go).
		`{"level":"error","node.id":5,"node.name":"host","caller":"/hscontrol/poll.go:194","error":"node not found: 5","time":"2026-12-01T10:00:00Z","message":"failed to disconnect node"}`,
		`{"level":"error","error":"database is locked","message":"failed to disconnect node"}`,
		`{"level":"error","error":"node not found: 7","message":"failed to delete node"}`,
		`{"level":"warn","message":"something odd"}`,
		`{"level":"info","message":"chatty"}`,
	}
	s.relayLogs(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != len(lines) {
		t.Fatalf("want %d lines, got %d:\n%s", len(lines), len(got), out.String())
	}
	want := []string{"level=DEBUG", "level=ERROR", "level=ERROR", "level=WARN", "level=DEBUG"}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("line %d: want %s, got %s", i, w, got[i])
		}
	}
	if !strings.Contains(got[0], `msg="failed to disconnect node"`) || !strings.Contains(got[0], `error="node not found: 5"`) {
		t.Errorf("the lowered line keeps its message and fields: %s", got[0])
	}
}

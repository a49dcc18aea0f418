package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/roomnet/roomnet/roomnettest"
)

// chromium finds Debian's Chromium. Without it the browser tests skip,
// unless ROOMNET_TEST_REQUIRE_BROWSER is set (CI sets it): then they fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("ROOMNET_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("ROOMNET_TEST_REQUIRE_BROWSER") != "" {
		t.Fatal("Chromium is required (ROOMNET_TEST_REQUIRE_BROWSER) but not installed: apt-get install chromium")
	}
	t.Skip("Chromium not installed (apt-get install chromium); set ROOMNET_CHROMIUM to its path")
	return ""
}

// browser starts one headless Chromium for the test, kept off the
// network (no background networking, component updates, sync or QUIC).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{},
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// profile opens a tab in a fresh browser context: its own cookies and
// storage, as another person's browser.
func profile(t *testing.T, b context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab and must not carry a deadline: the tab
	// lives as long as the context of that run.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

// run runs actions with a deadline and fails the test with a screenshot
// of the page when they fail.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		shot(t, ctx, "failed-"+what)
		t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a screenshot as a test artifact (go test -artifacts keeps
// them under the output directory).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
	}
}

// waitJS polls a script until it returns true.
func waitJS(script string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](script, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

// eval evaluates a script in the page and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, script string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", script, err)
	}
	return v
}

func signInLobby(t *testing.T, ctx context.Context, url, user, password string) {
	t.Helper()
	run(t, ctx, "sign in "+user,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		waitJS(`document.querySelector('#chat-status').textContent === 'online'`),
	)
}

func say(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	run(t, ctx, "say "+text,
		chromedp.SendKeys(chromedp.CSS("#chat-input"), text),
		chromedp.Click(chromedp.CSS("#chat-form button")),
		waitJS(`document.querySelector('#chat-input').value === ''`),
	)
}

type shown struct {
	Seq  int    `json:"seq"`
	From string `json:"from"`
	Body string `json:"body"`
}

// lobbyMessages reads the acknowledged messages a page shows in a
// conversation, top to bottom.
func lobbyMessages(t *testing.T, ctx context.Context, conv string) []shown {
	t.Helper()
	return eval[[]shown](t, ctx, fmt.Sprintf(`[...document.querySelectorAll('ol.messages[data-conv=%q] li.msg')]
		.map(li => ({seq: Number(li.dataset.seq), from: li.dataset.from, body: li.dataset.body}))`, conv))
}

// requireOnceInOrder checks that a page shows exactly want (bodies), each
// once, in strictly increasing seq order.
func requireOnceInOrder(t *testing.T, got []shown, want []string) {
	t.Helper()
	seen := map[string]int{}
	last := 0
	for _, m := range got {
		if m.Seq <= last {
			t.Fatalf("messages out of order or repeated at seq %d after %d: %+v", m.Seq, last, got)
		}
		last = m.Seq
		seen[m.Body]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Fatalf("message %q shown %d times, want once: %+v", w, seen[w], got)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("shown %d messages, want %d: %+v", len(got), len(want), got)
	}
}

func TestMain(m *testing.M) { roomnettest.Main(m) }

func bodiesIn(ms []shown) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%d:%s ", m.Seq, m.Body)
	}
	return b.String()
}

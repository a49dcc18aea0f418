package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/roomnet/roomnet/roomnettest"
)

// chromium finds Debian's Chromium. Without it the browser tests skip,
// unless ROOMNET_TEST_REQUIRE_BROWSER is set (CI sets it): then they fail.
func chromium(t testing.TB) string {
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
func browser(t testing.TB) context.Context {
	t.Helper()
	// No password manager: its save prompt can take the keyboard from the
	// page after a sign-in (typed keys then go nowhere).
	dir := t.TempDir()
	prefs := `{"credentials_enable_service":false,"profile":{"password_manager_enabled":false,"password_manager_leak_detection":false}}`
	if err := os.MkdirAll(filepath.Join(dir, "Default"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Default", "Preferences"), []byte(prefs), 0o644); err != nil {
		t.Fatal(err)
	}
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
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,PasswordLeakDetection"),
		chromedp.UserDataDir(dir),
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
// storage, as another person's browser. The tab is watched: the test
// fails on any Content-Security-Policy violation, uncaught exception or
// console error in it (see watch).
func profile(t testing.TB, b context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab and must not carry a deadline: the tab
	// lives as long as the context of that run.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return watch(t, ctx)
}

// console collects what a tab wrote to its console that is a fault.
type console struct {
	mu       sync.Mutex
	problems []string
	allowed  []string
}

type consoleKey struct{}

// cspProbe runs in every document before its own scripts: a CSP
// violation becomes a console error even where Chromium reports it only
// as an event.
const cspProbe = `document.addEventListener('securitypolicyviolation', (e) =>
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber + ' ' + (e.sample || '')));`

// watch fails the test, when it ends, on console errors of the tab:
// uncaught exceptions, console.error, browser log errors and CSP
// violations. A resource that answered 4xx is not a fault (pages handle
// the API's 401 and 404); a test allows other expected messages with
// allowConsole.
func watch(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	// Without a registered scheme handler, Chromium says so when the page
	// hands over to roomnet://; that is the documented fallback.
	c := &console{allowed: []string{"does not have a registered handler"}}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			fault := m.IsException() || m.Type == chromedp.ConsoleError || strings.Contains(m.Text, "Content Security Policy")
			if !fault || m.Source == "network" && httpClientError.MatchString(m.Text) {
				continue
			}
			c.mu.Lock()
			c.problems = append(c.problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
			c.mu.Unlock()
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspProbe})
		return err
	})); err != nil {
		t.Fatalf("installing the CSP probe: %v", err)
	}
	ctx = context.WithValue(ctx, consoleKey{}, c)
	t.Cleanup(func() { requireCleanConsole(t, ctx) })
	return ctx
}

var httpClientError = regexp.MustCompile(`status of 4\d\d`)

// allowConsole lets a tab write console errors containing text (a
// WebSocket refused while the server restarts, say).
func allowConsole(ctx context.Context, text string) {
	c := ctx.Value(consoleKey{}).(*console)
	c.mu.Lock()
	c.allowed = append(c.allowed, text)
	c.mu.Unlock()
}

// requireCleanConsole fails the test if the tab wrote a fault so far.
func requireCleanConsole(t testing.TB, ctx context.Context) {
	t.Helper()
	c, _ := ctx.Value(consoleKey{}).(*console)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var bad []string
next:
	for _, p := range c.problems {
		for _, a := range c.allowed {
			if strings.Contains(p, a) {
				continue next
			}
		}
		bad = append(bad, p)
	}
	if len(bad) > 0 {
		t.Errorf("the page wrote %d console errors or CSP violations:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// run runs actions with a deadline and fails the test with a screenshot
// of the page when they fail.
func run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
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
func shot(t testing.TB, ctx context.Context, name string) {
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
func eval[T any](t testing.TB, ctx context.Context, script string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", script, err)
	}
	return v
}

func signInLobby(t testing.TB, ctx context.Context, url, user, password string) {
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

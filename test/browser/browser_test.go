// Package browser_test drives the web console in a headless Chromium with
// chromedp, against a real server (gRPC and HTTP on loopback) driven by the
// SDK. A page that throws or logs console.error fails the test.
//
// Chromium is DMQ_CHROMIUM if set, else /usr/bin/chromium (Debian's
// package) or one on the PATH. When it is missing the tests skip, unless
// DMQ_REQUIRE_BROWSER=1 (set by .ci/run), where they fail.
package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds one browser step (a navigation, a wait, a click).
const stepTimeout = 15 * time.Second

// screenshots is where each page's picture goes, for a person to look at
// (git ignores it).
const screenshots = "screenshots"

func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}
	if c := os.Getenv("DMQ_CHROMIUM"); c != "" {
		candidates = []string{c} // an explicit choice is the only one
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("Chromium not found (looked for %s); install it with `sudo apt-get install -y chromium` "+
		"(or set DMQ_CHROMIUM to a Chrome binary) to run the console's browser tests", strings.Join(candidates, ", "))
	if os.Getenv("DMQ_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + " (DMQ_REQUIRE_BROWSER=1 makes this a failure)")
	}
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium tab on the console at base.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	problems []string // console errors and uncaught exceptions not yet reported
	// failedLoads are URL parts whose failed loads (4xx) a test expects:
	// the API refusing bad input, a page that does not exist.
	failedLoads []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := chromiumPath(t)
	profile := t.TempDir() // removed after the browser stopped (cleanups run last-in first-out)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 1000),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, base: base, failedLoads: []string{"/api/v1/"}}
	if err := chromedp.Do(ctx); err != nil { // starts the browser with no timeout
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			if b.problem(m) {
				b.problems = append(b.problems, fmt.Sprintf("%s (%s:%d)", m.String(), m.URL, m.Line+1))
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-done
		b.check()
	})
	return b
}

// problem reports whether a console message means the page is broken: an
// uncaught exception or an error. The browser's own line about a load that
// answered 4xx is expected for the URLs in failedLoads; the page shows that
// error itself. b.mu is held.
func (b *browser) problem(m chromedp.ConsoleMessage) bool {
	if m.IsException() {
		return true
	}
	if m.Type != "error" && m.Type != "assert" {
		return false
	}
	if strings.HasPrefix(m.Text, "Failed to load resource: the server responded with a status of 4") {
		for _, u := range b.failedLoads {
			if strings.Contains(m.URL, u) {
				return false
			}
		}
	}
	return true
}

// expectFailedLoad declares that loading a URL containing part answers 4xx
// on purpose.
func (b *browser) expectFailedLoad(part string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failedLoads = append(b.failedLoads, part)
}

// check fails the test for every console error or exception seen so far.
func (b *browser) check() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("JavaScript problem on the page: %s", p)
	}
	b.problems = nil
}

// do runs steps with the step timeout, failing the test on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.check()
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open loads path and waits until ready (a CSS selector) is visible.
func (b *browser) open(path, ready string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(ready)))
	b.check()
}

// follow clicks the link sel and waits for the new page's ready selector.
func (b *browser) follow(sel, ready string) {
	b.t.Helper()
	b.do("follow "+sel,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))(ctx, t)
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(ready)))
	b.check()
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// fill replaces the value of the input sel.
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do("fill "+sel, chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeVisible))
}

// text returns the text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel), chromedp.NodeReady))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// eval evaluates a JavaScript expression and decodes its result.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitText waits until the text of sel (any match) contains want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	b.waitJS(fmt.Sprintf("text of %s to contain %q", sel, want),
		fmt.Sprintf(`[...document.querySelectorAll(%s)].some((e) => e.textContent.includes(%s))`, js(sel), js(want)))
}

// waitJS waits until the JavaScript expression is true.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.check()
		b.t.Fatalf("waiting for %s: %v (page text: %.600s)", what, err, b.text("main"))
	}
	b.check()
}

// screenshot saves the whole page as screenshots/name.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(screenshots, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

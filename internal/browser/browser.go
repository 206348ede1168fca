package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"babelfish.dev/babelfish/internal/tools"
)

// ArtifactsEnv names a directory where tests leave what they capture
// (screenshots); CI keeps it.
const ArtifactsEnv = "BABELFISH_ARTIFACTS"

// probe is what CheckConsole writes with console.error; Problems leaves it out.
const probe = "babelfish-console-probe"

// Find returns the path of the Chromium the Debian package installs, or an
// error that says to run `make tools`.
func Find() (string, error) {
	var errs []error
	for _, name := range []string{"chromium", "chromium-browser"} {
		p, err := tools.SystemTool(name)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("browser: headless Chromium not found (run `make tools`): %w", errors.Join(errs...))
}

type config struct {
	exe           string
	width, height int
	timeout       time.Duration
	logf          func(string, ...any)
}

// Option configures Open.
type Option func(*config)

// WithExecPath uses this Chromium instead of the one Find returns.
func WithExecPath(p string) Option { return func(c *config) { c.exe = p } }

// WithWindowSize sets the browser window in CSS pixels (default 1400x1100).
func WithWindowSize(w, h int) Option { return func(c *config) { c.width, c.height = w, h } }

// WithTimeout bounds the page's whole life, every action included
// (default 90 s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithLogf receives the DevTools protocol's own errors (t.Logf, say).
func WithLogf(f func(string, ...any)) Option { return func(c *config) { c.logf = f } }

// Page is one tab of a headless Chromium that Open started.
type Page struct {
	Exe string // the Chromium running the page

	ctx    context.Context
	cancel []context.CancelFunc

	mu       sync.Mutex
	problems []string
}

// Open starts headless Chromium, loads url and returns once the page is
// loaded; Close stops the browser.
func Open(ctx context.Context, url string, opts ...Option) (*Page, error) {
	cfg := config{width: 1400, height: 1100, timeout: 90 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.width <= 0 || cfg.height <= 0 {
		return nil, fmt.Errorf("browser: window size %dx%d: both must be positive", cfg.width, cfg.height)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("browser: timeout %v: must be positive", cfg.timeout)
	}
	if cfg.exe == "" {
		exe, err := Find()
		if err != nil {
			return nil, err
		}
		cfg.exe = exe
	}
	ao := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(cfg.exe),
		chromedp.WindowSize(cfg.width, cfg.height),
		// Containers give /dev/shm 64 MiB, too little for Chromium.
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run its sandbox as root.
		ao = append(ao, chromedp.NoSandbox)
	}
	p := &Page{Exe: cfg.exe}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, ao...)
	var copts []chromedp.ContextOption
	if cfg.logf != nil {
		copts = append(copts, chromedp.WithErrorf(cfg.logf))
	}
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, copts...)
	p.ctx, p.cancel = tabCtx, []context.CancelFunc{cancelAlloc, cancelTab}
	var cancelTimeout context.CancelFunc
	p.ctx, cancelTimeout = context.WithTimeout(tabCtx, cfg.timeout)
	p.cancel = append(p.cancel, cancelTimeout)

	chromedp.ListenTarget(p.ctx, p.listen)
	if err := chromedp.Run(p.ctx, cdplog.Enable(), runtime.Enable(), chromedp.Navigate(url)); err != nil {
		p.Close()
		return nil, fmt.Errorf("browser: load %s in %s: %w", url, cfg.exe, err)
	}
	return p, nil
}

// listen keeps what would tell a user the page is broken.
func (p *Page) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeAssert || ev.Type == runtime.APITypeWarning {
			var args []string
			for _, a := range ev.Args {
				// Primitives come as JSON values, objects (Error) as descriptions.
				if len(a.Value) > 0 {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		msg = "uncaught exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.LevelError || ev.Entry.Level == cdplog.LevelWarning {
			msg = fmt.Sprintf("log %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}
	if msg != "" {
		p.mu.Lock()
		p.problems = append(p.problems, msg)
		p.mu.Unlock()
	}
}

// Close stops the browser.
func (p *Page) Close() {
	for _, c := range slices.Backward(p.cancel) {
		c()
	}
}

// WaitVisible waits until an element matching the CSS selector is shown.
func (p *Page) WaitVisible(selector string) error {
	if err := chromedp.Run(p.ctx, chromedp.WaitVisible(selector, chromedp.ByQuery)); err != nil {
		return fmt.Errorf("browser: wait for %q: %w", selector, err)
	}
	return nil
}

// Eval evaluates a JavaScript expression and decodes its JSON value into out
// (nil discards it).
func (p *Page) Eval(expr string, out any) error {
	if err := chromedp.Run(p.ctx, chromedp.Evaluate(expr, out)); err != nil {
		return fmt.Errorf("browser: evaluate: %w", err)
	}
	return nil
}

// Screenshot is a PNG of the whole page, beyond the window too.
func (p *Page) Screenshot() ([]byte, error) {
	var shot []byte
	if err := chromedp.Run(p.ctx, chromedp.FullScreenshot(&shot, 100)); err != nil {
		return nil, fmt.Errorf("browser: screenshot: %w", err)
	}
	return shot, nil
}

// CheckConsole proves the page's console errors reach Problems: it logs one
// with console.error and waits up to timeout for it to be heard, so that a
// test finding no problem knows it was listening.
func (p *Page) CheckConsole(timeout time.Duration) error {
	if err := p.Eval(`console.error("`+probe+`")`, nil); err != nil {
		return err
	}
	heard := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return slices.ContainsFunc(p.problems, func(m string) bool { return strings.Contains(m, probe) })
	}
	for end := time.Now().Add(timeout); !heard(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			return fmt.Errorf("browser: a console.error made by the test was not seen in %v: console errors would go unnoticed", timeout)
		}
	}
	return nil
}

// Problems are the console errors and warnings, uncaught exceptions and
// browser log errors seen so far, CheckConsole's own left out.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.problems {
		if !strings.Contains(m, probe) {
			out = append(out, m)
		}
	}
	return out
}

// ArtifactDir is where a test keeps what it captures: $BABELFISH_ARTIFACTS
// when set (created if missing), else t.ArtifactDir() (kept with
// `go test -artifacts`).
func ArtifactDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(ArtifactsEnv); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("%s: %v", ArtifactsEnv, err)
		}
		return d
	}
	return t.ArtifactDir()
}

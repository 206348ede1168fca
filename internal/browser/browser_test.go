package browser_test

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"babelfish.dev/babelfish/internal/browser"
)

// TestOpen loads pages in real headless Chromium: a clean one reports no
// problem, broken ones report what broke, JavaScript evaluates and the
// screenshot is a PNG of the window's size.
func TestOpen(t *testing.T) {
	pages := map[string]string{
		"/clean":     `<p id="x">hello</p><script>document.body.dataset.n = String(6 * 7);</script>`,
		"/error":     `<p id="x">hello</p><script>console.error("boom", 42);</script>`,
		"/throw":     `<p id="x">hello</p><script>null.f();</script>`,
		"/missing":   `<p id="x">hello</p><img src="/nowhere.png">`,
		"/warning":   `<p id="x">hello</p><script>console.warn("careful");</script>`,
		"/hiddenmsg": `<p id="x">hello</p><script>console.log("fine");</script>`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><html><head><title>t</title><link rel=icon href=data:,></head><body>" + body + "</body></html>"))
	}))
	defer srv.Close()

	tests := []struct {
		path string
		want string // substring of the one problem; "" for none
	}{
		{"/clean", ""},
		{"/hiddenmsg", ""},
		{"/error", "console.error: \"boom\" 42"},
		{"/warning", "console.warning: \"careful\""},
		{"/throw", "uncaught exception"},
		{"/missing", "404"},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			p, err := browser.Open(t.Context(), srv.URL+tc.path, browser.WithWindowSize(640, 480), browser.WithTimeout(60*time.Second), browser.WithLogf(t.Logf))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := p.WaitVisible("#x"); err != nil {
				t.Fatal(err)
			}
			var text string
			if err := p.Eval(`document.getElementById("x").textContent`, &text); err != nil || text != "hello" {
				t.Fatalf("eval: %q, %v", text, err)
			}
			if err := p.CheckConsole(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			probs := p.Problems()
			switch {
			case tc.want == "" && len(probs) != 0:
				t.Errorf("clean page reported %q", probs)
			case tc.want != "" && (len(probs) == 0 || !strings.Contains(strings.Join(probs, "\n"), tc.want)):
				t.Errorf("problems %q; want one with %q", probs, tc.want)
			}
			if tc.path != "/clean" {
				return
			}
			var n string
			if err := p.Eval(`document.body.dataset.n`, &n); err != nil || n != "42" {
				t.Errorf("script result %q, %v", n, err)
			}
			shot, err := p.Screenshot()
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(shot))
			if err != nil {
				t.Fatalf("screenshot is not a PNG: %v", err)
			}
			// The window's height includes the browser's own frame; its width is the page's.
			if b := img.Bounds(); b.Dx() != 640 || b.Dy() < 200 {
				t.Errorf("screenshot %v; want 640 wide, at least 200 high", b)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		opts []browser.Option
		want string
	}{
		{"no such browser", []browser.Option{browser.WithExecPath(filepath.Join(t.TempDir(), "no-chromium"))}, "no-chromium"},
		{"bad size", []browser.Option{browser.WithWindowSize(0, 10)}, "window size 0x10"},
		{"bad timeout", []browser.Option{browser.WithTimeout(-time.Second)}, "timeout -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := browser.Open(t.Context(), "about:blank", tc.opts...)
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to name %q", err, tc.want)
			}
		})
	}
}

func TestArtifactDir(t *testing.T) {
	d := filepath.Join(t.TempDir(), "a", "b")
	t.Setenv(browser.ArtifactsEnv, d)
	if got := browser.ArtifactDir(t); got != d {
		t.Fatalf("ArtifactDir %q; want %q", got, d)
	}
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		t.Fatalf("%s not created: %v", d, err)
	}
}

package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Source is where the dashboard's figures come from. The handler calls the
// four methods concurrently on every poll, each under the poll timeout; one
// that fails blanks its own section of the page, with the error shown, and
// leaves the others. Implementations must be safe for concurrent use.
type Source interface {
	// GPUs returns every node with its GPUs.
	GPUs(ctx context.Context) ([]Node, error)
	// Jobs returns the training jobs, queued and running ones first; the
	// page keeps their order within a phase.
	Jobs(ctx context.Context) ([]Job, error)
	// Releases returns the model releases, newest first.
	Releases(ctx context.Context) ([]Release, error)
	// Serving returns the serving tier's current load and latency.
	Serving(ctx context.Context) (Serving, error)
}

// Node is one machine and its GPUs.
type Node struct {
	Name string `json:"name"`
	GPUs []GPU  `json:"gpus"`
}

// GPU is one GPU as last sampled. A nil measurement is unknown (a lost GPU,
// or a source that does not have it, like an inventory without live
// samples) and shows as a dash.
type GPU struct {
	Index       int      `json:"index"`
	UUID        string   `json:"uuid,omitempty"`
	Model       string   `json:"model,omitempty"`
	UtilPct     *float64 `json:"utilPct"`
	MemUsedMiB  *float64 `json:"memUsedMiB"`
	MemTotalMiB *float64 `json:"memTotalMiB"`
	TempC       *float64 `json:"tempC"`
	PowerW      *float64 `json:"powerW"`
	Healthy     bool     `json:"healthy"`
	// Reason says why an unhealthy GPU is unhealthy (e.g. "XID 79").
	Reason string `json:"reason,omitempty"`
	// Pods holding the GPU, as namespace/name.
	Pods []string `json:"pods,omitempty"`
}

// Job is one TrainingJob.
type Job struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Queue     string `json:"queue,omitempty"`
	// Phase is the TrainingJob's status.phase: Pending, Admitted, Running,
	// Restarting, Preempted, Succeeded or Failed.
	Phase         string    `json:"phase"`
	Priority      int32     `json:"priority"`
	Workers       int       `json:"workers"`
	GPUsPerWorker int       `json:"gpusPerWorker"`
	Step          int64     `json:"step"`
	Steps         int64     `json:"steps"`
	Loss          *float64  `json:"loss"`
	Nodes         []string  `json:"nodes,omitempty"`
	Message       string    `json:"message,omitempty"`
	Created       time.Time `json:"created,omitzero"`
}

// Release is one model release (models/<model>/releases/<n>.json).
type Release struct {
	Model   string `json:"model"`
	Release int64  `json:"release"`
	// Current is true for the release models/<model>/current points at.
	Current bool `json:"current"`
	// Source names what was promoted, e.g. checkpoints/<job>/<step>.
	Source string `json:"source,omitempty"`
	// Metric and MetricName: the eval figure the release was promoted on.
	MetricName string    `json:"metricName,omitempty"`
	Metric     *float64  `json:"metric"`
	Created    time.Time `json:"created,omitzero"`
}

// Serving is the serving tier right now.
type Serving struct {
	// QPS is requests answered per second, recently.
	QPS float64 `json:"qps"`
	// P99Seconds is the 99th percentile request latency, recently; nil
	// when there were no requests to measure.
	P99Seconds *float64 `json:"p99Seconds"`
	// ErrorRatio is the share of recent requests that failed (0..1).
	ErrorRatio float64 `json:"errorRatio"`
	Replicas   int     `json:"replicas"`
	// Release is the release the replicas serve (0: none loaded).
	Release int64  `json:"release"`
	Model   string `json:"model,omitempty"`
}

// State is what GET api/state answers: every section, and per section the
// error that blanked it.
type State struct {
	Title       string            `json:"title"`
	GeneratedAt time.Time         `json:"generatedAt"`
	PollMillis  int64             `json:"pollMillis"`
	Nodes       []Node            `json:"nodes"`
	Jobs        []Job             `json:"jobs"`
	Releases    []Release         `json:"releases"`
	Serving     *Serving          `json:"serving"`
	Errors      map[string]string `json:"errors,omitempty"`
}

//go:embed static
var static embed.FS

const (
	defaultTitle   = "Babelfish"
	defaultPoll    = 2 * time.Second
	defaultTimeout = 5 * time.Second
	minPoll        = 100 * time.Millisecond
	maxPoll        = 10 * time.Minute
	maxTitleLen    = 200
)

type config struct {
	title   string
	poll    time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// Option configures New.
type Option func(*config)

// WithTitle sets the page's title (default "Babelfish"), e.g. the cluster's
// name.
func WithTitle(s string) Option { return func(c *config) { c.title = s } }

// WithPollInterval sets how often the page asks for new figures (default
// 2s; 100ms..10m).
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.poll = d } }

// WithTimeout bounds each Source call of a poll (default 5s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithLogger sets the logger of source errors (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Handler serves the page at its root ("" or "/"), its assets, and
// api/state. It uses relative URLs only, so it can be mounted under a
// prefix with http.StripPrefix.
type Handler struct {
	src Source
	cfg config
	mux *http.ServeMux
}

// New returns the dashboard's handler over src.
func New(src Source, opts ...Option) (*Handler, error) {
	if src == nil {
		return nil, errors.New("dashboard: source is nil")
	}
	c := config{title: defaultTitle, poll: defaultPoll, timeout: defaultTimeout, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case c.poll < minPoll || c.poll > maxPoll:
		return nil, fmt.Errorf("dashboard: poll interval %v: must be in %v..%v", c.poll, minPoll, maxPoll)
	case c.timeout <= 0:
		return nil, fmt.Errorf("dashboard: timeout %v: must be > 0", c.timeout)
	case c.title == "" || len(c.title) > maxTitleLen:
		return nil, fmt.Errorf("dashboard: title is %d bytes: must be 1..%d", len(c.title), maxTitleLen)
	case c.log == nil:
		return nil, errors.New("dashboard: logger is nil")
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: embedded assets: %w", err)
	}
	h := &Handler{src: src, cfg: c, mux: http.NewServeMux()}
	files := http.FileServerFS(sub)
	h.mux.Handle("GET /{$}", files)
	h.mux.Handle("GET /app.js", files)
	h.mux.Handle("GET /app.css", files)
	h.mux.HandleFunc("GET /api/state", h.serveState)
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The page reads only its own origin; nothing may frame it.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "" {
		r.URL.Path = "/"
	}
	h.mux.ServeHTTP(w, r)
}

// Collect asks the source for every section at once, as api/state does.
func (h *Handler) Collect(ctx context.Context) State {
	st := State{Title: h.cfg.title, PollMillis: h.cfg.poll.Milliseconds(), Nodes: []Node{}, Jobs: []Job{}, Releases: []Release{}}
	var (
		mu   sync.Mutex
		errs = map[string]string{}
		wg   sync.WaitGroup
	)
	run := func(section string, f func(ctx context.Context) error) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, h.cfg.timeout)
			defer cancel()
			if err := f(ctx); err != nil {
				h.cfg.log.Warn("dashboard source failed", "section", section, "err", err)
				mu.Lock()
				errs[section] = err.Error()
				mu.Unlock()
			}
		})
	}
	run("gpus", func(ctx context.Context) error {
		n, err := h.src.GPUs(ctx)
		if err == nil && n != nil {
			st.Nodes = n
		}
		return err
	})
	run("jobs", func(ctx context.Context) error {
		j, err := h.src.Jobs(ctx)
		if err == nil && j != nil {
			st.Jobs = j
		}
		return err
	})
	run("releases", func(ctx context.Context) error {
		r, err := h.src.Releases(ctx)
		if err == nil && r != nil {
			st.Releases = r
		}
		return err
	})
	run("serving", func(ctx context.Context) error {
		s, err := h.src.Serving(ctx)
		if err == nil {
			st.Serving = &s
		}
		return err
	})
	wg.Wait()
	if len(errs) > 0 {
		st.Errors = errs
	}
	st.GeneratedAt = h.cfg.now()
	return st
}

func (h *Handler) serveState(w http.ResponseWriter, r *http.Request) {
	st := h.Collect(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(st); err != nil {
		h.cfg.log.Debug("dashboard: write state", "err", err)
	}
}

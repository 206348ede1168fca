package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// Defaults of the options.
const (
	// DefaultAgentSelector matches the chart's GPU agent pods.
	DefaultAgentSelector = "app.kubernetes.io/part-of=babelfish,app.kubernetes.io/component=gpu-agent"
	// DefaultServingSelector matches the chart's serving pods.
	DefaultServingSelector = "app.kubernetes.io/part-of=babelfish,app.kubernetes.io/component=serving"
	// DefaultAgentPort and DefaultServingPort are used for pods without a
	// container port named "metrics".
	DefaultAgentPort   = 9400
	DefaultServingPort = 9090
	// DefaultScrapeTimeout bounds one scrape: an agent slower than this
	// shows dashes rather than holding the page.
	DefaultScrapeTimeout = time.Second
	// DefaultRateWindow is the span serving QPS and p99 are measured over.
	DefaultRateWindow = 30 * time.Second
	// DefaultMaxFinished is how many finished jobs the page lists.
	DefaultMaxFinished = 50

	maxScrapeTimeout = time.Minute
	maxRateWindow    = time.Hour
	maxFinishedLimit = 10000
)

// Releases lists model releases, newest first; Registry is the object
// store's.
type Releases interface {
	Releases(ctx context.Context) ([]dashboard.Release, error)
}

// ErrNoReleases is what Releases answers when the Source was given none.
var ErrNoReleases = errors.New("model releases: no object store configured (set --s3-* flags or BABELFISH_S3_* variables)")

type config struct {
	jobNamespace    string
	nodeSelector    string
	agentNamespace  string
	agentSelector   string
	agentPort       int
	servingNS       string
	servingSelector string
	servingPort     int
	scrapeTimeout   time.Duration
	rateWindow      time.Duration
	maxFinished     int
	client          *http.Client
	releases        Releases
	log             *slog.Logger
	now             func() time.Time
}

// Option configures New.
type Option func(*config)

// WithJobNamespace shows the TrainingJobs of one namespace (default all).
func WithJobNamespace(ns string) Option { return func(c *config) { c.jobNamespace = ns } }

// WithNodeSelector shows the GPUs of the Nodes matching a label selector
// (default all).
func WithNodeSelector(sel string) Option { return func(c *config) { c.nodeSelector = sel } }

// WithAgentPods sets where the GPU agent pods are: a namespace ("" all) and
// a label selector (default DefaultAgentSelector).
func WithAgentPods(namespace, selector string) Option {
	return func(c *config) { c.agentNamespace, c.agentSelector = namespace, selector }
}

// WithServingPods sets where the serving pods are: a namespace ("" all) and
// a label selector (default DefaultServingSelector).
func WithServingPods(namespace, selector string) Option {
	return func(c *config) { c.servingNS, c.servingSelector = namespace, selector }
}

// WithPorts sets the /metrics ports of agent and serving pods that have no
// container port named "metrics" (defaults 9400 and 9090).
func WithPorts(agent, serving int) Option {
	return func(c *config) { c.agentPort, c.servingPort = agent, serving }
}

// WithScrapeTimeout bounds each /metrics scrape (default 1s).
func WithScrapeTimeout(d time.Duration) Option { return func(c *config) { c.scrapeTimeout = d } }

// WithRateWindow sets the span serving QPS and p99 are measured over
// (default 30s).
func WithRateWindow(d time.Duration) Option { return func(c *config) { c.rateWindow = d } }

// WithMaxFinished sets how many finished (Succeeded or Failed) jobs are
// listed, the most recent (default 50).
func WithMaxFinished(n int) Option { return func(c *config) { c.maxFinished = n } }

// WithHTTPClient sets the client of the scrapes (default a plain one).
func WithHTTPClient(h *http.Client) Option { return func(c *config) { c.client = h } }

// WithReleases sets where model releases come from; without it Releases
// answers ErrNoReleases.
func WithReleases(r Releases) Option { return func(c *config) { c.releases = r } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// withClock sets the clock of serving rates (tests).
func withClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Source is the dashboard's Source over a Kubernetes cluster. It is safe
// for concurrent use.
type Source struct {
	cs   kubernetes.Interface
	crd  rest.Interface
	cfg  config
	live *liveState
}

var _ dashboard.Source = (*Source)(nil)

// New returns a Source reading the cluster cfg points at. It talks to no
// server until asked.
func New(cfg *rest.Config, opts ...Option) (*Source, error) {
	if cfg == nil {
		return nil, errors.New("dashboard source: REST config is nil")
	}
	c := config{
		agentSelector: DefaultAgentSelector, servingSelector: DefaultServingSelector,
		agentPort: DefaultAgentPort, servingPort: DefaultServingPort,
		scrapeTimeout: DefaultScrapeTimeout, rateWindow: DefaultRateWindow, maxFinished: DefaultMaxFinished,
		log: slog.Default(), now: time.Now,
	}
	for _, o := range opts {
		o(&c)
	}
	for _, s := range []struct{ name, sel string }{
		{"node selector", c.nodeSelector}, {"agent selector", c.agentSelector}, {"serving selector", c.servingSelector},
	} {
		if _, err := labels.Parse(s.sel); err != nil {
			return nil, fmt.Errorf("dashboard source: %s %q: %w", s.name, s.sel, err)
		}
	}
	switch {
	case c.agentPort < 1 || c.agentPort > 65535:
		return nil, fmt.Errorf("dashboard source: agent port %d: must be in 1..65535", c.agentPort)
	case c.servingPort < 1 || c.servingPort > 65535:
		return nil, fmt.Errorf("dashboard source: serving port %d: must be in 1..65535", c.servingPort)
	case c.scrapeTimeout <= 0 || c.scrapeTimeout > maxScrapeTimeout:
		return nil, fmt.Errorf("dashboard source: scrape timeout %v: must be in (0, %v]", c.scrapeTimeout, maxScrapeTimeout)
	case c.rateWindow < time.Second || c.rateWindow > maxRateWindow:
		return nil, fmt.Errorf("dashboard source: rate window %v: must be in 1s..%v", c.rateWindow, maxRateWindow)
	case c.maxFinished < 0 || c.maxFinished > maxFinishedLimit:
		return nil, fmt.Errorf("dashboard source: max finished jobs %d: must be in 0..%d", c.maxFinished, maxFinishedLimit)
	case c.log == nil:
		return nil, errors.New("dashboard source: logger is nil")
	}
	if c.client == nil {
		c.client = &http.Client{}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dashboard source: %w", err)
	}
	crd, err := crdClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Source{cs: cs, crd: crd, cfg: c, live: newLiveState()}, nil
}

// crdClient is a REST client of group babelfish.dev.
func crdClient(cfg *rest.Config) (rest.Interface, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("dashboard source: scheme: %w", err)
	}
	c := rest.CopyConfig(cfg)
	gv := v1alpha1.GroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = "application/json"
	c.AcceptContentTypes = "application/json"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("dashboard source: babelfish.dev client: %w", err)
	}
	return rc, nil
}

// Releases lists the model releases, newest first.
func (s *Source) Releases(ctx context.Context) ([]dashboard.Release, error) {
	if s.cfg.releases == nil {
		return nil, ErrNoReleases
	}
	return s.cfg.releases.Releases(ctx)
}

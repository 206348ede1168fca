package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/scheduler/controller"
	"babelfish.dev/babelfish/scheduler/core"
	"babelfish.dev/babelfish/scheduler/dashboard"
	"babelfish.dev/babelfish/scheduler/dashboard/kube"
)

type schedulerFlags struct {
	kubeconfig string
	listen     string
	qps        float32
	burst      int
	opts       controller.Options
	dash       dashboardFlags
	store      *storeFlags
}

// dashboardFlags configure the SRE page `scheduler --dashboard-listen`
// serves.
type dashboardFlags struct {
	listen           string
	title            string
	agentNamespace   string
	agentSelector    string
	servingNamespace string
	servingSelector  string
	models           []string
	scrapeTimeout    time.Duration
}

// newSchedulerCmd is `babelfish scheduler`: the Kubernetes GPU scheduler of
// TrainingJobs.
func newSchedulerCmd() *cobra.Command {
	f := &schedulerFlags{}
	o := &f.opts
	cmd := &cobra.Command{
		Use:     "scheduler [--kubeconfig FILE] [--policy babelfish] [--listen :8080]",
		Short:   "Run the GPU scheduler controller against a Kubernetes cluster",
		GroupID: "ops",
		Long: `Run the GPU scheduler of TrainingJobs (` + v1alpha1.Group + `/` + v1alpha1.Version + `).

It admits each TrainingJob through its Queue (GPU quota, weighted fair share,
borrowing of idle quota), places the job's workers as a gang (all or none)
on the GPUs the GPU agent reports healthy in each Node's ` + "`babelfish.dev/gpu-inventory`" + `
annotation, and binds the worker pods (schedulerName ` + controller.DefaultSchedulerName + `) through the
Binding subresource, with a headless Service for rendezvous. A higher-priority
gang that cannot fit preempts the jobs that lose the least work since their
last checkpoint, after --grace-period. A failed rank restarts the whole gang
from its last checkpoint with exponential backoff.

Replicas elect a leader on a Lease (--lease-namespace/--lease-name); only the
leader schedules, and a new leader rebuilds everything from the API server.
/metrics and /healthz are served on --listen.

With --dashboard-listen, every replica (leader or not) also serves the SRE
dashboard page there: GPUs per node from the GPU agents' Node inventories and
live /metrics (pods matching --dashboard-agent-selector), the TrainingJobs and
their phases, the model releases in the object store (--s3-* flags or
BABELFISH_S3_* variables; the section says so when none is set), and serving
QPS and p99 from the serving pods' /metrics.

Policies: ` + fmt.Sprint(core.PolicyNames()),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runScheduler(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.listen, "listen", ":8080", "address for /metrics and /healthz; empty serves none")
	fl.Float32Var(&f.qps, "kube-api-qps", 200, "requests per second to the API server")
	fl.IntVar(&f.burst, "kube-api-burst", 400, "burst of requests to the API server")
	fl.StringVar(&o.Namespace, "namespace", "", "schedule TrainingJobs of this namespace only (default: all)")
	fl.StringVar(&o.NodeSelector, "node-selector", "", "label selector of the nodes to schedule on (default: all)")
	fl.StringVar(&o.SchedulerName, "scheduler-name", controller.DefaultSchedulerName, "spec.schedulerName of the worker pods")
	fl.StringVar(&o.Policy, "policy", controller.DefaultPolicy, fmt.Sprintf("packing policy: one of %v", core.PolicyNames()))
	preempt := fl.Bool("preempt", true, "let higher-priority gangs preempt lower-priority jobs")
	fl.DurationVar(&o.GracePeriod, "grace-period", core.DefaultGracePeriod, "time a preempted job has to checkpoint before its pods are killed")
	fl.DurationVar(&o.PodGracePeriod, "pod-grace-period", controller.DefaultPodGracePeriod, "grace of pods deleted for other reasons (failed gang, finished job)")
	fl.IntVar(&o.MaxEvictions, "max-evictions", core.DefaultMaxEvictions, "a job preempted this often is never preempted again")
	fl.DurationVar(&o.BackoffBase, "backoff-base", controller.DefaultBackoffBase, "first wait before a failed gang is placed again (doubles per restart)")
	fl.DurationVar(&o.BackoffMax, "backoff-max", controller.DefaultBackoffMax, "longest wait before a failed gang is placed again")
	fl.IntVar(&o.Parallelism, "parallelism", controller.DefaultParallelism, "gangs submitted to the API server at once")
	fl.DurationVar(&o.Resync, "resync", controller.DefaultResync, "run a pass at least this often")
	fl.BoolVar(&o.LeaderElection, "leader-elect", true, "elect a leader among replicas on a Lease")
	fl.StringVar(&o.LeaseName, "lease-name", controller.DefaultLeaseName, "name of the leader Lease")
	fl.StringVar(&o.LeaseNamespace, "lease-namespace", envOr("POD_NAMESPACE", controller.DefaultLeaseNamespace), "namespace of the leader Lease (default $POD_NAMESPACE)")
	fl.DurationVar(&o.LeaseDuration, "lease-duration", controller.DefaultLeaseDuration, "how long a leader's Lease lasts without renewal")
	fl.DurationVar(&o.RenewDeadline, "renew-deadline", controller.DefaultRenewDeadline, "how long the leader tries to renew before it steps down")
	fl.DurationVar(&o.RetryPeriod, "retry-period", controller.DefaultRetryPeriod, "interval of Lease attempts")
	d := &f.dash
	fl.StringVar(&d.listen, "dashboard-listen", "", "address of the SRE dashboard page, e.g. :8081; empty serves none")
	fl.StringVar(&d.title, "dashboard-title", "Babelfish", "title of the dashboard page, e.g. the cluster's name")
	fl.StringVar(&d.agentNamespace, "dashboard-agent-namespace", envOr("POD_NAMESPACE", ""), "namespace of the GPU agent pods (default $POD_NAMESPACE; empty: all)")
	fl.StringVar(&d.agentSelector, "dashboard-agent-selector", kube.DefaultAgentSelector, "label selector of the GPU agent pods whose /metrics the dashboard scrapes")
	fl.StringVar(&d.servingNamespace, "dashboard-serving-namespace", envOr("POD_NAMESPACE", ""), "namespace of the serving pods (default $POD_NAMESPACE; empty: all)")
	fl.StringVar(&d.servingSelector, "dashboard-serving-selector", kube.DefaultServingSelector, "label selector of the serving pods whose /metrics the dashboard scrapes")
	fl.StringSliceVar(&d.models, "dashboard-models", nil, "models whose releases the dashboard lists (default: every model in the object store)")
	fl.DurationVar(&d.scrapeTimeout, "dashboard-scrape-timeout", kube.DefaultScrapeTimeout, "time one agent or serving pod has to answer before its figures show as dashes")
	f.store = addStoreFlags(cmd)
	cmd.PreRunE = func(*cobra.Command, []string) error {
		o.DisablePreemption = !*preempt
		if f.qps <= 0 || f.burst < 1 {
			return fmt.Errorf("--kube-api-qps %g and --kube-api-burst %d: must be > 0", f.qps, f.burst)
		}
		if f.dash.listen != "" && f.dash.listen == f.listen {
			return fmt.Errorf("--dashboard-listen %s: must differ from --listen", f.dash.listen)
		}
		return nil
	}
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func runScheduler(ctx context.Context, f *schedulerFlags) error {
	cfg, err := gpuKubeConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = f.qps, f.burst
	cfg.UserAgent = "babelfish-scheduler"
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o := f.opts
	o.Registerer = reg
	o.Logger = slog.Default()
	s, err := controller.New(cfg, o)
	if err != nil {
		return err
	}
	var dash http.Handler
	if f.dash.listen != "" {
		if dash, err = newKubeDashboard(ctx, cfg, f); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var servers []*http.Server
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
		}
	}()
	serve := func(flag, addr string, h http.Handler, what string) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", flag, addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s %s: %w", flag, addr, err)
				cancel()
			}
		}()
		slog.Info("serving "+what, "addr", ln.Addr().String())
		return nil
	}
	if f.listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		if err := serve("--listen", f.listen, mux, "/metrics and /healthz"); err != nil {
			return err
		}
	}
	if dash != nil {
		if err := serve("--dashboard-listen", f.dash.listen, dash, "the dashboard page"); err != nil {
			return err
		}
	}
	runErr := s.Run(ctx)
	select {
	case err := <-errc:
		return err
	default:
	}
	return runErr
}

// newKubeDashboard is the dashboard page over the cluster: GPUs, jobs and
// serving from the API server and the pods' /metrics, releases from the
// object store when one is configured.
func newKubeDashboard(ctx context.Context, cfg *rest.Config, f *schedulerFlags) (http.Handler, error) {
	d := &f.dash
	opts := []kube.Option{
		kube.WithJobNamespace(f.opts.Namespace),
		kube.WithNodeSelector(f.opts.NodeSelector),
		kube.WithAgentPods(d.agentNamespace, d.agentSelector),
		kube.WithServingPods(d.servingNamespace, d.servingSelector),
		kube.WithScrapeTimeout(d.scrapeTimeout),
		kube.WithLogger(slog.Default()),
	}
	switch {
	case f.store.envErr != nil:
		return nil, f.store.envErr
	case f.store.cfg.Endpoint == "":
		slog.Warn("no object store configured (--s3-* flags or BABELFISH_S3_* variables): the dashboard lists no model releases")
	default:
		if err := f.store.cfg.Validate(); err != nil {
			return nil, fmt.Errorf("dashboard releases: %w", err)
		}
		store, err := objstore.New(ctx, f.store.cfg, objstore.WithLogger(slog.Default()))
		if err != nil {
			return nil, fmt.Errorf("dashboard releases: %w", err)
		}
		rel, err := kube.NewRegistry(store, kube.WithModels(d.models...), kube.WithRegistryLogger(slog.Default()))
		if err != nil {
			return nil, fmt.Errorf("--dashboard-models: %w", err)
		}
		opts = append(opts, kube.WithReleases(rel))
	}
	src, err := kube.New(cfg, opts...)
	if err != nil {
		return nil, err
	}
	// The poll timeout covers a scrape of every pod and the API lists.
	return dashboard.New(src, dashboard.WithTitle(d.title), dashboard.WithTimeout(d.scrapeTimeout+5*time.Second), dashboard.WithLogger(slog.Default()))
}

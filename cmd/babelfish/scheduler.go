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

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/controller"
	"babelfish.dev/babelfish/scheduler/core"
)

type schedulerFlags struct {
	kubeconfig string
	listen     string
	qps        float32
	burst      int
	opts       controller.Options
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
	cmd.PreRunE = func(*cobra.Command, []string) error {
		o.DisablePreemption = !*preempt
		if f.qps <= 0 || f.burst < 1 {
			return fmt.Errorf("--kube-api-qps %g and --kube-api-burst %d: must be > 0", f.qps, f.burst)
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	if f.listen != "" {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", f.listen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("--listen %s: %w", f.listen, err)
				cancel()
			}
		}()
		defer func() {
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		}()
		slog.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	}
	runErr := s.Run(ctx)
	select {
	case err := <-errc:
		return err
	default:
	}
	return runErr
}

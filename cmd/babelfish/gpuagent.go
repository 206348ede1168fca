package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/nvml/inventory"
)

type gpuAgentOptions struct {
	listen         string
	fake           string
	hostname       string
	nodeName       string
	kubeconfig     string
	publish        bool
	interval       time.Duration
	ignoredXIDs    []uint
	recoveryQuiet  time.Duration
	podSocket      string
	publishMin     time.Duration
	publishBeat    time.Duration
	freeStepMiB    int64
	topologyPeriod time.Duration
	slowPeriod     time.Duration
}

// newGPUAgentCmd is `babelfish gpu-agent`: the per-node GPU agent.
func newGPUAgentCmd() *cobra.Command {
	o := gpuAgentOptions{}
	cmd := &cobra.Command{
		Use:     "gpu-agent [--listen :9400] [--fake-gpus dgxa100|dgxh100]",
		Short:   "Run the NVML GPU agent: metrics, inventory and health for one node",
		GroupID: "ops",
		Long: `Run the GPU agent of one node (a DaemonSet in a cluster).

It samples every GPU through NVML each --interval and serves, on --listen:
  /metrics    Prometheus metrics with dcgm-exporter's names and units
              (DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED, ...), labelled with
              the pod, namespace and container holding each GPU (from the
              kubelet's pod-resources socket), XIDs counted per code
  /healthz    200 while sampling keeps up
  /inventory  the JSON inventory published on the Node

Critical XIDs and double-bit ECC errors make a GPU unhealthy (XIDs in
--ignore-xids are application errors and only counted); a GPU that stays
quiet for --recovery-quiet and passes the recovery probe is healthy again.

With --node-name (default $NODE_NAME) the agent writes the inventory onto its
Node: labels nvidia.com/gpu.product, .count, .memory, .family and the
annotation ` + inventory.Annotation + ` (per-GPU memory, health, NVLink island),
only when it changed and at most every --publish-min-interval.

Without an NVIDIA driver it fails; --fake-gpus=dgxa100 or dgxh100 runs on
go-nvml's simulated machines instead. It never falls back by itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGPUAgent(cmd.Context(), cmd, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":9400", "address for /metrics, /healthz and /inventory")
	f.StringVar(&o.fake, "fake-gpus", "", fmt.Sprintf("simulate a machine instead of using NVML: one of %v", nvml.FakeKinds()))
	f.StringVar(&o.hostname, "hostname", "", "Hostname label of the metrics (default $NODE_NAME, else the host name)")
	f.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "Node to publish the inventory on; empty publishes nothing")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for publishing (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	f.BoolVar(&o.publish, "publish", true, "publish the inventory on the Node named by --node-name")
	f.DurationVar(&o.interval, "interval", nvml.DefaultInterval, "sampling interval")
	ignored := make([]uint, 0, len(nvml.DefaultIgnoredXIDs()))
	for _, x := range nvml.DefaultIgnoredXIDs() {
		ignored = append(ignored, uint(x))
	}
	f.UintSliceVar(&o.ignoredXIDs, "ignore-xids", ignored, "XIDs that are application errors: counted, but the GPU stays healthy")
	f.DurationVar(&o.recoveryQuiet, "recovery-quiet", nvml.DefaultRecoveryQuiet, "quiet time before an unhealthy GPU is probed for recovery")
	f.StringVar(&o.podSocket, "pod-resources-socket", nvml.DefaultPodResourcesSocket, "kubelet pod-resources socket for pod labels; empty turns them off")
	f.DurationVar(&o.publishMin, "publish-min-interval", nvml.DefaultPublishMinInterval, "least time between two writes of the Node")
	f.DurationVar(&o.publishBeat, "publish-heartbeat", nvml.DefaultPublishHeartbeat, "rewrite an unchanged inventory this often")
	f.Int64Var(&o.freeStepMiB, "publish-free-step-mib", nvml.DefaultFreeStepMiB, "free-memory change (MiB) that counts as an inventory change")
	f.DurationVar(&o.topologyPeriod, "topology-interval", nvml.DefaultTopologyInterval, "how often NVLink islands are recomputed")
	f.DurationVar(&o.slowPeriod, "slow-interval", nvml.DefaultSlowInterval, "how often the slow NVML queries (energy counter, power limit, PCIe replays) are made; samples in between carry their values")
	return cmd
}

func runGPUAgent(ctx context.Context, cmd *cobra.Command, o *gpuAgentOptions) error {
	log := slog.Default()
	var lib gonvml.Interface
	if o.fake != "" {
		fake, err := nvml.NewFake(o.fake)
		if err != nil {
			return fmt.Errorf("--fake-gpus: %w", err)
		}
		log.Warn("using simulated GPUs, not NVML", "kind", o.fake, "gpus", fake.Count())
		lib = fake.Interface()
	} else {
		lib = gonvml.New()
	}

	host := o.hostname
	if host == "" {
		host = os.Getenv("NODE_NAME")
	}
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--hostname: not given and the host name is unknown: %w", err)
		}
		host = h
	}

	var pods nvml.PodLister
	if o.podSocket != "" {
		if _, err := os.Stat(o.podSocket); err != nil {
			if cmd.Flags().Changed("pod-resources-socket") {
				return fmt.Errorf("--pod-resources-socket %s: %w", o.podSocket, err)
			}
			log.Info("no kubelet pod-resources socket: metrics carry no pod labels", "socket", o.podSocket)
		} else {
			c, err := nvml.DialPodResources(o.podSocket)
			if err != nil {
				return fmt.Errorf("--pod-resources-socket: %w", err)
			}
			defer c.Close()
			pods = c
		}
	}

	ignored := make([]uint64, 0, len(o.ignoredXIDs))
	for _, x := range o.ignoredXIDs {
		ignored = append(ignored, uint64(x))
	}
	agent, err := nvml.New(ctx, nvml.Config{
		NVML:             lib,
		Hostname:         host,
		NodeName:         cmp.Or(o.nodeName, host),
		Interval:         o.interval,
		IgnoredXIDs:      ignored,
		RecoveryQuiet:    o.recoveryQuiet,
		TopologyInterval: o.topologyPeriod,
		SlowInterval:     o.slowPeriod,
		PodLister:        pods,
		Logger:           log,
	})
	if errors.Is(err, nvml.ErrNoNVML) || errors.Is(err, nvml.ErrNoGPUs) {
		return fmt.Errorf("%w\nno usable GPU on this machine; to run on a simulated one pass --fake-gpus=dgxa100 or --fake-gpus=dgxh100", err)
	}
	if err != nil {
		return err
	}
	defer agent.Close()

	var pub *nvml.Publisher
	switch {
	case !o.publish:
	case o.nodeName == "":
		if cmd.Flags().Changed("publish") {
			return fmt.Errorf("--publish: needs --node-name (or $NODE_NAME) to know which Node to write")
		}
		log.Info("no --node-name: the inventory is served on /inventory but not published on a Node")
	default:
		cfg, err := gpuKubeConfig(o.kubeconfig)
		if err != nil {
			return fmt.Errorf("publishing on node %s: %w", o.nodeName, err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("publishing on node %s: %w", o.nodeName, err)
		}
		pub, err = nvml.NewPublisher(nvml.PublisherConfig{
			Client: cs, NodeName: o.nodeName, MinInterval: o.publishMin, Heartbeat: o.publishBeat,
			FreeStepMiB: o.freeStepMiB, Logger: log,
		})
		if err != nil {
			return err
		}
	}

	var handler http.Handler
	if pub != nil {
		handler, err = agent.Handler(pub)
	} else {
		handler, err = agent.Handler()
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("gpu agent serving", "addr", ln.Addr().String(), "gpus", len(agent.GPUs()), "interval", o.interval, "publish_node", gpuPublishNode(pub, o.nodeName))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if pub != nil {
			go pub.Run(ctx, agent)
		}
		if err := agent.Run(ctx); err != nil {
			log.Error("gpu agent stopped", "err", err)
		}
	}()
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		cancel()
	}
	<-done
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer shutCancel()
	if shutErr := srv.Shutdown(shutCtx); shutErr != nil && err == nil {
		err = shutErr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func gpuPublishNode(p *nvml.Publisher, node string) string {
	if p == nil {
		return ""
	}
	return node
}

// gpuKubeConfig finds a REST config: the --kubeconfig file, else the
// in-cluster service account, else $KUBECONFIG or ~/.kube/config.
func gpuKubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes config: not in a cluster, and --kubeconfig, $KUBECONFIG and ~/.kube/config give none: %w", err)
	}
	return cfg, nil
}

// newGPUsCmd is `babelfish gpus`: a table of GPUs across nodes.
func newGPUsCmd() *cobra.Command {
	var (
		agents     []string
		kubeconfig string
		selector   string
		watch      bool
		interval   time.Duration
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:     "gpus [--agent http://node:9400 ...] [--watch]",
		Short:   "Show a live table of GPUs across nodes",
		GroupID: "ops",
		Long: `Show every GPU with its node, model, utilization, memory, temperature, power,
health (with the reason when unhealthy), NVLink island and the pods holding it.

With --agent (repeatable) it scrapes those GPU agents' /metrics live: every
column is filled. Without, it reads the inventory the agents publish on the
Nodes (annotation ` + inventory.Annotation + `) through the kubeconfig: memory,
health and islands as of the last publish, with its age. --watch redraws
every --interval until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if interval <= 0 {
				return fmt.Errorf("--interval %v: must be > 0", interval)
			}
			var cs kubernetes.Interface
			if len(agents) == 0 {
				cfg, err := gpuKubeConfig(kubeconfig)
				if err != nil {
					return fmt.Errorf("%w (or pass --agent URL to scrape agents directly)", err)
				}
				if cs, err = kubernetes.NewForConfig(cfg); err != nil {
					return err
				}
			}
			client := &http.Client{Timeout: timeout}
			out := cmd.OutOrStdout()
			for {
				rows, err := gpuRows(ctx, client, cs, agents, selector, timeout)
				if watch {
					fmt.Fprint(out, "\x1b[H\x1b[2J")
					fmt.Fprintf(out, "babelfish gpus  %s  every %v\n\n", time.Now().Format(time.TimeOnly), interval)
				}
				if err != nil {
					if !watch && len(rows) == 0 {
						return err
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", err)
				}
				if len(rows) == 0 && !watch {
					return errors.New("no GPUs found: no Node carries a GPU inventory (is the gpu-agent running and publishing?)")
				}
				if err := nvml.WriteTable(out, rows, time.Now()); err != nil {
					return err
				}
				if !watch {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&agents, "agent", nil, "GPU agent base URL to scrape, e.g. http://node-1:9400 (repeatable)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to read Nodes with (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&selector, "selector", inventory.LabelCount, "label selector of the Nodes to show")
	f.BoolVarP(&watch, "watch", "w", false, "redraw every --interval")
	f.DurationVar(&interval, "interval", 2*time.Second, "redraw interval with --watch")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "timeout of each scrape or API call")
	return cmd
}

func gpuRows(ctx context.Context, client *http.Client, cs kubernetes.Interface, agents []string, selector string, timeout time.Duration) ([]nvml.Row, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if cs != nil {
		return nvml.NodeRows(ctx, cs, selector)
	}
	var rows []nvml.Row
	var errs []error
	for _, a := range agents {
		r, err := nvml.ScrapeAgent(ctx, client, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rows = append(rows, r...)
	}
	nvml.SortRows(rows)
	return rows, errors.Join(errs...)
}

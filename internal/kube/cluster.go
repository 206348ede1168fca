package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"babelfish.dev/babelfish/internal/tools"
)

// The cluster's fixed network and names. Only one cluster runs on a machine
// at a time, so these need not vary.
const (
	clusterDomain = "cluster.local"
	podCIDR       = "10.244.0.0/24" // the node's pods
	clusterCIDR   = "10.244.0.0/16"
	serviceCIDR   = "10.96.0.0/16"
	bridgeName    = "cni0"
	// routeLink, an empty bridge (this kernel has no dummy links), holds
	// routes for the service and pod ranges, so a packet to
	// an address kube-proxy has no rule for stays on this machine instead of
	// following the default route out.
	routeLink = "bf-kube0"
	// runDir holds the sockets and containerd's state: short paths (unix
	// sockets allow 107 bytes) in a tmpfs.
	runDir   = "/run/babelfish-kube"
	lockPath = "/run/lock/babelfish-kube.lock"
	// PauseImage is the sandbox image containerd is configured with;
	// scripts/ociimage.sh builds it.
	PauseImage = "docker.io/babelfish/pause:3.10"
)

// Unix socket paths hold at most 107 bytes; the kubelet's longest sockets
// add about this much to its root directory.
const (
	maxSocketPath          = 107
	maxKubeletSocketSuffix = 45
)

// sysctls the pod network needs: routing from the bridge, and bridged
// traffic through iptables so Service replies between pods on one bridge
// are un-NATed. Stop restores the values they had.
var sysctls = map[string]string{
	"net.ipv4.ip_forward":                 "1",
	"net.bridge.bridge-nf-call-iptables":  "1",
	"net.bridge.bridge-nf-call-ip6tables": "1",
}

type config struct {
	dir          string
	nodeName     string
	nodeLabels   map[string]string
	images       []string
	log          *slog.Logger
	startTimeout time.Duration
	extraArgs    map[string][]string
}

// Option configures Start.
type Option func(*config)

// WithDir keeps the cluster's state (etcd data, certificates, containerd's
// images, logs) in dir, which Stop leaves in place so a later Start there
// is a warm start. Default: a new temporary directory that Stop removes.
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithNodeName names the node (default "babelfish-node").
func WithNodeName(name string) Option { return func(c *config) { c.nodeName = name } }

// WithNodeLabels sets labels the kubelet registers its node with.
func WithNodeLabels(labels map[string]string) Option {
	return func(c *config) {
		if c.nodeLabels == nil {
			c.nodeLabels = map[string]string{}
		}
		for k, v := range labels {
			c.nodeLabels[k] = v
		}
	}
}

// WithImages imports OCI image archives into containerd before the kubelet
// starts. The pause image (PauseImage) must be among them, or already in a
// warm cluster directory.
func WithImages(archives ...string) Option {
	return func(c *config) { c.images = append(c.images, archives...) }
}

// WithExtraArgs appends command-line arguments to one part ("kubelet",
// "kube-apiserver", ...), for tuning or to see how a failing part is
// reported.
func WithExtraArgs(part string, args ...string) Option {
	return func(c *config) {
		if c.extraArgs == nil {
			c.extraArgs = map[string][]string{}
		}
		c.extraArgs[part] = append(c.extraArgs[part], args...)
	}
}

// WithLogger sets the logger for the cluster's own messages.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithStartTimeout bounds the start of each part (default 2 minutes).
func WithStartTimeout(d time.Duration) Option { return func(c *config) { c.startTimeout = d } }

// Cluster is a running single-node cluster.
type Cluster struct {
	cfg       config
	dir       string
	tempDir   bool
	logDir    string
	nodeIP    net.IP
	pki       *pki
	kubecfg   string
	rest      *rest.Config
	clientset kubernetes.Interface
	ports     ports
	bins      map[string]string
	lock      *os.File
	sysctls   map[string]string // values before Start

	mu    sync.Mutex
	parts map[string]*part

	startup time.Duration

	stopOnce sync.Once
	stopErr  error
}

type ports struct {
	etcdClient, etcdPeer, apiserver, controllerManager, scheduler int
	kubelet, kubeletHealthz, proxyHealthz, proxyMetrics           int
	dnsHealth, dnsReady                                           int
}

// Start brings up the cluster and returns once the node is Ready, kube-proxy
// has synced, CoreDNS answers and the default ServiceAccount exists. If a
// part fails, Start stops what it started and returns a *PartError naming
// the part and its log.
func Start(ctx context.Context, opts ...Option) (_ *Cluster, err error) {
	c := config{nodeName: "babelfish-node", log: slog.Default(), startTimeout: 2 * time.Minute}
	for _, o := range opts {
		o(&c)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("kube: a real cluster needs root (the kubelet, containerd and CNI manage mounts, cgroups and network namespaces)")
	}
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	cl := &Cluster{cfg: c, bins: bins, parts: map[string]*part{}}
	if cl.lock, err = acquireLock(ctx, c.log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, cl.Stop(context.WithoutCancel(ctx)))
		}
	}()
	if err := cleanStale(c.log); err != nil {
		return cl, fmt.Errorf("kube: clear what an earlier cluster left: %w", err)
	}
	if cl.dir = c.dir; cl.dir == "" {
		if cl.dir, err = os.MkdirTemp("", "babelfish-kube-"); err != nil {
			return cl, err
		}
		cl.tempDir = true
	}
	if cl.dir, err = filepath.Abs(cl.dir); err != nil {
		return cl, err
	}
	// The kubelet listens on unix sockets under its root directory
	// (pod-resources/kubelet.sock, device-plugins/..., plugins_registry/...),
	// and a socket path holds at most 107 bytes.
	if root := filepath.Join(cl.dir, "kubelet"); len(root)+maxKubeletSocketSuffix > maxSocketPath {
		return cl, fmt.Errorf("kube: state directory %s is too long (%d bytes): the kubelet's sockets under %s must fit in %d bytes; choose a directory of at most %d bytes",
			cl.dir, len(cl.dir), root, maxSocketPath, maxSocketPath-maxKubeletSocketSuffix-len("/kubelet"))
	}
	cl.logDir = filepath.Join(cl.dir, "logs")
	for _, d := range []string{cl.logDir, runDir, filepath.Join(cl.dir, "cni", "net.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return cl, err
		}
	}
	// Stale cleanup reads this to find the mounts of a crashed run.
	if err := os.WriteFile(filepath.Join(runDir, "dir"), []byte(cl.dir), 0o644); err != nil {
		return cl, err
	}
	if cl.nodeIP, err = nodeAddress(); err != nil {
		return cl, err
	}
	if cl.ports, err = freePorts(); err != nil {
		return cl, err
	}
	if cl.pki, err = newPKI(filepath.Join(cl.dir, "pki"), cl.nodeIP, net.IPv4(10, 96, 0, 1)); err != nil {
		return cl, err
	}
	cl.kubecfg = filepath.Join(cl.dir, "kubeconfig")
	if err := writeKubeconfig(cl.kubecfg, fmt.Sprintf("https://127.0.0.1:%d", cl.ports.apiserver), cl.pki); err != nil {
		return cl, err
	}
	if cl.rest, err = clientcmd.BuildConfigFromFlags("", cl.kubecfg); err != nil {
		return cl, fmt.Errorf("kube: load %s: %w", cl.kubecfg, err)
	}
	cl.rest.QPS, cl.rest.Burst = 50, 100
	if cl.clientset, err = kubernetes.NewForConfig(cl.rest); err != nil {
		return cl, err
	}

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"etcd", cl.startEtcd},
		{"kube-apiserver", cl.startAPIServer},
		{"kube-controller-manager", cl.startControllerManager},
		{"kube-scheduler", cl.startScheduler},
		{"containerd", cl.startContainerd},
		{"images", func(ctx context.Context) error { return cl.ImportImages(ctx, c.images...) }},
		{"network", cl.setupNetwork},
		{"kubelet", cl.startKubelet},
		{"kube-proxy", cl.startProxy},
		{"coredns", cl.startCoreDNS},
		{"default service account", cl.waitServiceAccount},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return cl, err
		}
		c.log.Debug("cluster part ready", "part", s.name, "took", time.Since(t).Round(time.Millisecond))
	}
	cl.startup = time.Since(began)
	c.log.Info("cluster ready", "node", c.nodeName, "nodeIP", cl.nodeIP, "kubeconfig", cl.kubecfg, "took", cl.startup.Round(time.Millisecond))
	return cl, nil
}

// Kubeconfig is the path of an admin kubeconfig (certificates embedded).
func (cl *Cluster) Kubeconfig() string { return cl.kubecfg }

// Config returns a copy of the admin REST config.
func (cl *Cluster) Config() *rest.Config { return rest.CopyConfig(cl.rest) }

// Clientset is an admin clientset.
func (cl *Cluster) Clientset() kubernetes.Interface { return cl.clientset }

// NodeName is the name of the one node.
func (cl *Cluster) NodeName() string { return cl.cfg.nodeName }

// NodeIP is the node's address: pods reach the API server and CoreDNS there.
func (cl *Cluster) NodeIP() net.IP { return cl.nodeIP }

// Dir is the cluster's state directory; LogDir holds one log per part.
func (cl *Cluster) Dir() string    { return cl.dir }
func (cl *Cluster) LogDir() string { return cl.logDir }

// StartupDuration is how long Start took.
func (cl *Cluster) StartupDuration() time.Duration { return cl.startup }

func (cl *Cluster) run(name, bin string, args ...string) (*part, error) {
	args = append(args, cl.cfg.extraArgs[name]...)
	p, err := startPart(name, bin, args, cl.logDir, []string{markerEnv + "=" + cl.dir})
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	cl.parts[name] = p
	cl.mu.Unlock()
	return p, nil
}

func (cl *Cluster) part(name string) *part {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.parts[name]
}

func (cl *Cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", cl.ports.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", cl.ports.etcdPeer)
	p, err := cl.run("etcd", cl.bins["etcd"],
		"--name=default",
		"--data-dir="+filepath.Join(cl.dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer,
		"--unsafe-no-fsync", // a throwaway test cluster: speed over durability
		"--log-level=warn")
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, httpOK(client+"/health"))
}

func (cl *Cluster) startAPIServer(ctx context.Context) error {
	pk := cl.pki
	p, err := cl.run("kube-apiserver", cl.bins["kube-apiserver"],
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", cl.ports.etcdClient),
		"--bind-address=0.0.0.0",
		fmt.Sprintf("--secure-port=%d", cl.ports.apiserver),
		"--advertise-address="+cl.nodeIP.String(),
		"--tls-cert-file="+pk.serverCert, "--tls-private-key-file="+pk.serverKey,
		"--client-ca-file="+pk.caCert,
		"--service-cluster-ip-range="+serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc."+clusterDomain,
		"--service-account-key-file="+pk.saPub,
		"--service-account-signing-key-file="+pk.saKey,
		"--authorization-mode=Node,RBAC",
		// PodSecurity is on by default; naming it keeps it on whatever the defaults become.
		"--enable-admission-plugins=NodeRestriction,PodSecurity",
		"--kubelet-client-certificate="+pk.adminCert, "--kubelet-client-key="+pk.adminKey,
		// The node name resolves nowhere: reach the kubelet at its address.
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=false",
		"--profiling=false")
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, func(ctx context.Context) error {
		body, err := cl.clientset.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("readyz: %v %s", err, body)
		}
		return nil
	})
}

func (cl *Cluster) startControllerManager(ctx context.Context) error {
	port := cl.ports.controllerManager
	p, err := cl.run("kube-controller-manager", cl.bins["kube-controller-manager"],
		"--kubeconfig="+cl.kubecfg,
		"--authentication-kubeconfig="+cl.kubecfg, "--authorization-kubeconfig="+cl.kubecfg,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--leader-elect=false",
		"--cluster-name=babelfish",
		"--service-account-private-key-file="+cl.pki.saKey,
		"--root-ca-file="+cl.pki.caCert,
		// The CNI's host-local IPAM hands out pod addresses, from the
		// kubelet's podCIDR: no node IPAM controller.
		"--controllers=*,-nodeipam")
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, httpOK(fmt.Sprintf("https://127.0.0.1:%d/healthz", port)))
}

func (cl *Cluster) startScheduler(ctx context.Context) error {
	port := cl.ports.scheduler
	p, err := cl.run("kube-scheduler", cl.bins["kube-scheduler"],
		"--kubeconfig="+cl.kubecfg,
		"--authentication-kubeconfig="+cl.kubecfg, "--authorization-kubeconfig="+cl.kubecfg,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--leader-elect=false")
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, httpOK(fmt.Sprintf("https://127.0.0.1:%d/healthz", port)))
}

func (cl *Cluster) containerdSocket() string { return filepath.Join(runDir, "containerd.sock") }

func (cl *Cluster) startContainerd(ctx context.Context) error {
	cfgPath := filepath.Join(cl.dir, "containerd.toml")
	conf, err := render(containerdConfig, containerdValues{
		Root:       filepath.Join(cl.dir, "containerd"),
		State:      filepath.Join(runDir, "containerd"),
		Socket:     cl.containerdSocket(),
		PauseImage: PauseImage,
		CNIBin:     cniBinDir,
		CNIConf:    filepath.Join(cl.dir, "cni", "net.d"),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, conf, 0o644); err != nil {
		return err
	}
	p, err := cl.run("containerd", cl.bins["containerd"], "--config", cfgPath)
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, cl.criVersion)
}

// criVersion asks containerd's CRI service for its version.
func (cl *Cluster) criVersion(ctx context.Context) error {
	return cl.withCRI(func(rt runtimeapi.RuntimeServiceClient) error {
		_, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
		return err
	})
}

func (cl *Cluster) withCRI(fn func(runtimeapi.RuntimeServiceClient) error) error {
	conn, err := grpc.NewClient("unix://"+cl.containerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(runtimeapi.NewRuntimeServiceClient(conn))
}

// ImportImages loads OCI image archives into containerd's k8s.io namespace,
// where the kubelet finds them.
func (cl *Cluster) ImportImages(ctx context.Context, archives ...string) error {
	for _, a := range archives {
		if _, err := os.Stat(a); err != nil {
			return fmt.Errorf("kube: image archive: %w (build it with scripts/ociimage.sh)", err)
		}
		out, err := exec.CommandContext(ctx, cl.bins["ctr"], "--address", cl.containerdSocket(), "--namespace", "k8s.io",
			"images", "import", "--all-platforms", a).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kube: import image %s into containerd: %v: %s", a, err, strings.TrimSpace(string(out)))
		}
		cl.cfg.log.Debug("image imported", "archive", a, "ctr", strings.TrimSpace(string(out)))
	}
	return nil
}

// setupNetwork writes the CNI config, sets the sysctls, routes the service
// and pod ranges onto a local dummy link, and rejects pod traffic that
// would leave through any interface but the bridge.
func (cl *Cluster) setupNetwork(context.Context) error {
	conf, err := cniConfig(bridgeName, podCIDR, filepath.Join(runDir, "cni-ipam"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cl.dir, "cni", "net.d", "10-babelfish.conflist"), conf, 0o644); err != nil {
		return err
	}
	cl.sysctls = map[string]string{}
	for k, v := range sysctls {
		old, err := readSysctl(k)
		if err != nil {
			return fmt.Errorf("kube: sysctl %s: %w (the pod network needs it)", k, err)
		}
		cl.sysctls[k] = old
		if err := writeSysctl(k, v); err != nil {
			return err
		}
	}
	cmds := [][]string{
		{"ip", "link", "add", routeLink, "type", "bridge"},
		{"ip", "link", "set", routeLink, "up"},
		{"ip", "route", "add", serviceCIDR, "dev", routeLink},
		{"ip", "route", "add", clusterCIDR, "dev", routeLink},
		{"iptables", "-w", "-N", "BABELFISH-EGRESS"},
		{"iptables", "-w", "-A", "BABELFISH-EGRESS", "-s", clusterCIDR, "!", "-o", bridgeName, "-j", "REJECT"},
		{"iptables", "-w", "-I", "FORWARD", "1", "-j", "BABELFISH-EGRESS"},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return &PartError{Part: "network", Log: "(none)", Err: fmt.Errorf("%s: %v", strings.Join(c, " "), err), Tail: strings.TrimSpace(string(out))}
		}
	}
	return nil
}

func (cl *Cluster) startKubelet(ctx context.Context) error {
	conf, err := kubeletConfig(kubeletValues{
		nodeIP:           cl.nodeIP.String(),
		port:             int32(cl.ports.kubelet),
		healthzPort:      int32(cl.ports.kubeletHealthz),
		caFile:           cl.pki.caCert,
		runtimeSock:      cl.containerdSocket(),
		podCIDR:          podCIDR,
		clusterDNS:       cl.nodeIP.String(),
		evictionHard:     map[string]string{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		syncInterval:     10 * time.Second,
		nodeStatusUpdate: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(cl.dir, "kubelet-config.yaml")
	if err := os.WriteFile(cfgPath, conf, 0o644); err != nil {
		return err
	}
	args := []string{
		"--config=" + cfgPath,
		"--kubeconfig=" + cl.kubecfg,
		"--root-dir=" + filepath.Join(cl.dir, "kubelet"),
		"--hostname-override=" + cl.cfg.nodeName,
		"--node-ip=" + cl.nodeIP.String(),
	}
	if len(cl.cfg.nodeLabels) > 0 {
		var l []string
		for k, v := range cl.cfg.nodeLabels {
			l = append(l, k+"="+v)
		}
		sort.Strings(l)
		args = append(args, "--node-labels="+strings.Join(l, ","))
	}
	p, err := cl.run("kubelet", cl.bins["kubelet"], args...)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, p, cl.cfg.startTimeout, httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz", cl.ports.kubeletHealthz))); err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, cl.nodeReady)
}

func (cl *Cluster) nodeReady(ctx context.Context) error {
	n, err := cl.clientset.CoreV1().Nodes().Get(ctx, cl.cfg.nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s: %s", n.Name, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", n.Name)
}

func (cl *Cluster) startProxy(ctx context.Context) error {
	p, err := cl.run("kube-proxy", cl.bins["kube-proxy"],
		"--kubeconfig="+cl.kubecfg,
		"--hostname-override="+cl.cfg.nodeName,
		"--proxy-mode=iptables",
		// This kernel has conntrack built in but refuses new limits from a
		// sandbox: keep its own.
		"--conntrack-max-per-core=0",
		"--cluster-cidr="+clusterCIDR,
		fmt.Sprintf("--healthz-bind-address=127.0.0.1:%d", cl.ports.proxyHealthz),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", cl.ports.proxyMetrics))
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz", cl.ports.proxyHealthz)))
}

func (cl *Cluster) startCoreDNS(ctx context.Context) error {
	conf, err := render(corefile, corefileValues{
		Domain: clusterDomain, NodeIP: cl.nodeIP.String(), Kubeconfig: cl.kubecfg,
		HealthPort: cl.ports.dnsHealth, ReadyPort: cl.ports.dnsReady,
	})
	if err != nil {
		return err
	}
	path := filepath.Join(cl.dir, "Corefile")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return err
	}
	p, err := cl.run("coredns", cl.bins["coredns"], "-conf", path)
	if err != nil {
		return err
	}
	return waitFor(ctx, p, cl.cfg.startTimeout, httpOK(fmt.Sprintf("http://127.0.0.1:%d/ready", cl.ports.dnsReady)))
}

// waitServiceAccount waits for the controller-manager to make the default
// namespace's ServiceAccount, without which no pod there is admitted.
func (cl *Cluster) waitServiceAccount(ctx context.Context) error {
	return waitFor(ctx, cl.part("kube-controller-manager"), cl.cfg.startTimeout, func(ctx context.Context) error {
		_, err := cl.clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// RestartKubelet stops the kubelet and starts it again; running pods are
// left to containerd meanwhile. It returns when the node is Ready again.
func (cl *Cluster) RestartKubelet(ctx context.Context) error {
	if err := cl.part("kubelet").stop(30 * time.Second); err != nil {
		return err
	}
	return cl.startKubelet(ctx)
}

// RestartContainerd stops containerd and starts it again; the containers
// keep running under their shims meanwhile.
func (cl *Cluster) RestartContainerd(ctx context.Context) error {
	if err := cl.part("containerd").stop(30 * time.Second); err != nil {
		return err
	}
	return cl.startContainerd(ctx)
}

// Stop tears the cluster down and removes everything it made on the
// machine. Pods are stopped through the CRI first, so CNI tears down their
// network. It is safe to call more than once.
func (cl *Cluster) Stop(ctx context.Context) error {
	cl.stopOnce.Do(func() { cl.stopErr = cl.stop(ctx) })
	return cl.stopErr
}

func (cl *Cluster) stop(ctx context.Context) error {
	began := time.Now()
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	for _, name := range []string{"coredns", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kubelet"} {
		add("stop "+name, cl.part(name).stop(20*time.Second))
	}
	if p := cl.part("containerd"); p != nil && !p.exited() {
		add("stop pods", cl.stopPods(ctx))
	}
	add("stop containerd", cl.part("containerd").stop(20*time.Second))
	if _, err := killMarked(); err != nil {
		add("kill leftover processes", err)
	}
	add("kill leftover containers", killCgroups())
	if bin := cl.bins["kube-proxy"]; bin != "" && cl.part("kube-proxy") != nil {
		if out, err := exec.Command(bin, "--cleanup").CombinedOutput(); err != nil {
			add("kube-proxy --cleanup", fmt.Errorf("%v: %s", err, lastLine(out)))
		}
	}
	add("iptables", removeChains())
	add("network namespaces", removePodNetns())
	add("bridge", deleteLink(bridgeName))
	add("route link", deleteLink(routeLink))
	add("mounts", unmountUnder(cl.dir, runDir))
	for _, name := range []string{"kube-apiserver", "etcd"} {
		add("stop "+name, cl.part(name).stop(20*time.Second))
	}
	for k, v := range cl.sysctls {
		add("restore sysctl", writeSysctl(k, v))
	}
	add("remove "+runDir, os.RemoveAll(runDir))
	if cl.tempDir && cl.dir != "" {
		add("remove "+cl.dir, os.RemoveAll(cl.dir))
	}
	if cl.lock != nil {
		_ = cl.lock.Close() // releases the flock
	}
	cl.cfg.log.Info("cluster stopped", "took", time.Since(began).Round(time.Millisecond), "errors", len(errs))
	if len(errs) > 0 {
		return fmt.Errorf("kube: stop: %w", errors.Join(errs...))
	}
	return nil
}

// stopPods stops and removes every pod sandbox through the CRI, as the
// kubelet would: containers end and CNI releases each pod's network.
func (cl *Cluster) stopPods(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return cl.withCRI(func(rt runtimeapi.RuntimeServiceClient) error {
		resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return err
		}
		var errs []error
		for _, s := range resp.Items {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
				errs = append(errs, fmt.Errorf("stop pod %s/%s: %w", s.Metadata.GetNamespace(), s.Metadata.GetName(), err))
				continue
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
				errs = append(errs, fmt.Errorf("remove pod %s/%s: %w", s.Metadata.GetNamespace(), s.Metadata.GetName(), err))
			}
		}
		return errors.Join(errs...)
	})
}

// cleanStale removes what a cluster that was not stopped left behind. It
// runs under the lock, so nothing of a live cluster is touched.
func cleanStale(log *slog.Logger) error {
	n, err := killMarked()
	if err != nil {
		return err
	}
	var errs []error
	if err := killCgroups(); err != nil {
		errs = append(errs, err)
	}
	prev, _ := os.ReadFile(filepath.Join(runDir, "dir"))
	if err := removeChains(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, removePodNetns(), deleteLink(bridgeName), deleteLink(routeLink),
		unmountUnder(strings.TrimSpace(string(prev)), runDir), os.RemoveAll(runDir))
	if n > 0 || len(prev) > 0 {
		log.Info("cleared an earlier cluster that was not stopped", "processes", n, "dir", strings.TrimSpace(string(prev)))
	}
	return errors.Join(errs...)
}

// acquireLock takes the machine-wide cluster lock, waiting while another
// cluster holds it.
func acquireLock(ctx context.Context, log *slog.Logger) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kube: lock %s: %w", lockPath, err)
	}
	logged := false
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
			return f, nil
		}
		if !logged {
			holder, _ := os.ReadFile(lockPath)
			log.Info("waiting for another cluster on this machine to stop", "lock", lockPath, "holder pid", strings.TrimSpace(string(holder)))
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kube: another cluster holds %s: %w", lockPath, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// cniBinDir is where Debian's containernetworking-plugins installs them.
const cniBinDir = "/usr/lib/cni"

// findBinaries locates each part: the Kubernetes commands, etcd and CoreDNS
// in the tools cache; containerd, ctr, runc, the CNI plugins, ip and
// iptables from Debian's packages.
func findBinaries() (map[string]string, error) {
	bins := map[string]string{}
	var errs []error
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns"} {
		p, err := tools.Tool(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bins[name] = p
	}
	for _, name := range []string{"containerd", "ctr", "runc", "ip", "iptables", "iptables-save", "iptables-restore"} {
		p, err := tools.SystemTool(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bins[name] = p
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			errs = append(errs, fmt.Errorf("kube: CNI plugin %s missing from %s: run `make tools` (it installs containernetworking-plugins)", plugin, cniBinDir))
		}
	}
	return bins, errors.Join(errs...)
}

// nodeAddress is the machine's first global IPv4 address: the node's
// address, where pods reach the API server and CoreDNS.
func nodeAddress() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == bridgeName || ifc.Name == routeLink {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.To4(), nil
			}
		}
	}
	return nil, errors.New("kube: this machine has no global IPv4 address for the node (pods reach the API server and DNS there)")
}

// freePorts picks free loopback ports for every listener.
func freePorts() (ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	next := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		ls = append(ls, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var p ports
	for _, dst := range []*int{&p.etcdClient, &p.etcdPeer, &p.apiserver, &p.controllerManager, &p.scheduler,
		&p.kubelet, &p.kubeletHealthz, &p.proxyHealthz, &p.proxyMetrics, &p.dnsHealth, &p.dnsReady} {
		v, err := next()
		if err != nil {
			return p, fmt.Errorf("kube: free port: %w", err)
		}
		*dst = v
	}
	return p, nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Clean removes what a cluster that was not stopped left on this machine
// (processes, pods' containers, mounts, network namespaces, the bridge,
// iptables chains, cgroups). It waits while a live cluster holds the lock.
func Clean(ctx context.Context, log *slog.Logger) error {
	f, err := acquireLock(ctx, log)
	if err != nil {
		return err
	}
	defer f.Close()
	return cleanStale(log)
}

// TagImage gives an imported image a second name, as a registry push of
// the same content under a new tag would.
func (cl *Cluster) TagImage(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, cl.bins["ctr"], "--address", cl.containerdSocket(), "--namespace", "k8s.io",
		"images", "tag", "--force", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kube: tag image %s as %s: %v: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}

package kube

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

// writeKubeconfig writes an admin kubeconfig for server with the
// certificates embedded, so the file stands alone.
func writeKubeconfig(path, server string, p *pki) error {
	read := func(f string) ([]byte, error) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("kube: kubeconfig: %w", err)
		}
		return b, nil
	}
	ca, err := read(p.caCert)
	if err != nil {
		return err
	}
	cert, err := read(p.adminCert)
	if err != nil {
		return err
	}
	key, err := read(p.adminKey)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["babelfish"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["babelfish"] = &clientcmdapi.Context{Cluster: "babelfish", AuthInfo: "admin"}
	cfg.CurrentContext = "babelfish"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kube: write kubeconfig %s: %w", path, err)
	}
	return nil
}

// containerdConfig is containerd 1.6's config (version 2): its own root,
// state and socket, the CRI plugin with the local pause image, runc under
// cgroupfs, and CNI from Debian's plugins.
var containerdConfig = template.Must(template.New("containerd").Parse(`version = 2
root = "{{.Root}}"
state = "{{.State}}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{{.Socket}}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Root}}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  # Without it runc fails to write /proc/self/oom_score_adj in this sandbox.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBin}}"
    conf_dir = "{{.CNIConf}}"
`))

type containerdValues struct {
	Root, State, Socket, PauseImage, CNIBin, CNIConf string
}

// cniConfig is the node's pod network: one bridge with host-local
// addresses from the node's pod CIDR, and portmap for hostPort.
func cniConfig(bridge, podCIDR, ipamDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "babelfish",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      false, // pods have no outside network to reach
				"hairpinMode": true,  // a pod reaches itself through its Service
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

type kubeletValues struct {
	nodeIP                         string
	port, healthzPort              int32
	caFile, runtimeSock, podCIDR   string
	podLogsDir                     string
	clusterDNS                     string
	evictionHard                   map[string]string
	nodeStatusUpdate, syncInterval time.Duration
}

// kubeletConfig is the kubelet's config file, written from the kubelet's
// own typed API. It carries what this machine needs: cgroup v1 allowed,
// the cgroupfs driver, swap tolerated, and eviction and image GC thresholds
// that never remove the locally imported images (there is no registry to
// pull them back from).
func kubeletConfig(v kubeletValues) ([]byte, error) {
	f, t := false, true
	cfg := kubeletv1beta1.KubeletConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Address:            v.nodeIP,
		Port:               v.port,
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        &v.healthzPort,
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: v.caFile},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: &f},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: &f},
		},
		Authorization:               kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow},
		CgroupDriver:                "cgroupfs",
		FailSwapOn:                  &f,
		FailCgroupV1:                &f,
		ContainerRuntimeEndpoint:    "unix://" + v.runtimeSock,
		ClusterDNS:                  []string{v.clusterDNS},
		ClusterDomain:               clusterDomain,
		ResolverConfig:              ptr(""), // pods inherit no search path of the host
		PodCIDR:                     v.podCIDR,
		EvictionHard:                v.evictionHard,
		ImageGCHighThresholdPercent: ptr(int32(100)),
		ImageGCLowThresholdPercent:  ptr(int32(99)),
		SerializeImagePulls:         &f,
		RotateCertificates:          false,
		ServerTLSBootstrap:          false,
		NodeStatusUpdateFrequency:   metav1.Duration{Duration: v.nodeStatusUpdate},
		SyncFrequency:               metav1.Duration{Duration: v.syncInterval},
		CgroupsPerQOS:               &t,
		EnforceNodeAllocatable:      []string{"pods"},
		StaticPodPath:               "",
		PodLogsDir:                  v.podLogsDir, // not the host's /var/log/pods
		ProtectKernelDefaults:       false,
	}
	return yaml.Marshal(cfg)
}

// corefile serves cluster.local (Services, endpoints with hostnames, pods)
// and the reverse zones from the API server, on the node's address, for
// pods. Other names get no answer from upstream: the cluster has no
// outside network, so CoreDNS forwards nothing.
var corefile = template.Must(template.New("Corefile").Parse(`{{.Domain}}:53 in-addr.arpa:53 ip6.arpa:53 {
    bind {{.NodeIP}}
    errors
    health 127.0.0.1:{{.HealthPort}}
    ready 127.0.0.1:{{.ReadyPort}}
    kubernetes {{.Domain}} in-addr.arpa ip6.arpa {
        kubeconfig {{.Kubeconfig}} babelfish
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    loadbalance
}
.:53 {
    bind {{.NodeIP}}
    errors
}
`))

type corefileValues struct {
	Domain, NodeIP, Kubeconfig string
	HealthPort, ReadyPort      int
}

func render(t *template.Template, v any) ([]byte, error) {
	var b strings.Builder
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("kube: render %s: %w", t.Name(), err)
	}
	return []byte(b.String()), nil
}

func ptr[T any](v T) *T { return &v }

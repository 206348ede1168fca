package kube

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func TestChainRemovalScript(t *testing.T) {
	tests := []struct {
		name string
		save string
		want string
	}{
		{
			name: "nothing of ours",
			save: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n",
			want: "",
		},
		{
			name: "jumps from builtin chains are deleted, our chains flushed then removed",
			save: `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:CNI-abc - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -s 10.244.0.2/32 -j CNI-abc
-A POSTROUTING -j DOCKER
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X
-A CNI-abc -j ACCEPT
COMMIT
*filter
:FORWARD ACCEPT [0:0]
:BABELFISH-EGRESS - [0:0]
-A FORWARD -j BABELFISH-EGRESS
-A BABELFISH-EGRESS -s 10.244.0.0/16 ! -o cni0 -j REJECT
COMMIT
`,
			want: `*nat
-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-D POSTROUTING -s 10.244.0.2/32 -j CNI-abc
-F KUBE-SERVICES
-F CNI-abc
-X KUBE-SERVICES
-X CNI-abc
COMMIT
*filter
-D FORWARD -j BABELFISH-EGRESS
-F BABELFISH-EGRESS
-X BABELFISH-EGRESS
COMMIT
`,
		},
		{
			name: "a goto counts as a jump",
			save: "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n-A INPUT -g KUBE-FIREWALL\nCOMMIT\n",
			want: "*filter\n-D INPUT -g KUBE-FIREWALL\n-F KUBE-FIREWALL\n-X KUBE-FIREWALL\nCOMMIT\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := chainRemovalScript(tc.save); got != tc.want {
				t.Errorf("script:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/run/a`:             "/run/a",
		`/tmp/with\040space`: "/tmp/with space",
		`/x\134y`:            `/x\y`,
		`/trailing\04`:       `/trailing\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKubeletConfigRoundTrips(t *testing.T) {
	b, err := kubeletConfig(kubeletValues{
		nodeIP: "192.0.2.2", port: 10250, healthzPort: 10248, caFile: "/pki/ca.crt",
		runtimeSock: "/run/x/containerd.sock", podCIDR: podCIDR, clusterDNS: "192.0.2.2",
		evictionHard: map[string]string{"memory.available": "100Mi"}, syncInterval: 10 * time.Second, nodeStatusUpdate: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var back kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &back); err != nil {
		t.Fatalf("kubelet config does not decode strictly: %v\n%s", err, b)
	}
	if back.Kind != "KubeletConfiguration" || back.FailCgroupV1 == nil || *back.FailCgroupV1 || back.CgroupDriver != "cgroupfs" {
		t.Errorf("cgroup v1 settings lost:\n%s", b)
	}
	if back.ContainerRuntimeEndpoint != "unix:///run/x/containerd.sock" || back.ClusterDNS[0] != "192.0.2.2" {
		t.Errorf("runtime or DNS lost:\n%s", b)
	}
	if *back.ImageGCHighThresholdPercent != 100 {
		t.Errorf("image GC would remove imported images:\n%s", b)
	}
}

func TestCNIConfig(t *testing.T) {
	b, err := cniConfig("cni0", podCIDR, "/run/x/ipam")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0]["type"] != "bridge" || conf.Plugins[1]["type"] != "portmap" {
		t.Fatalf("plugins: %s", b)
	}
	if conf.Plugins[0]["ipMasq"] != false || !strings.Contains(string(b), podCIDR) {
		t.Errorf("bridge must not masquerade pods out, and must use %s: %s", podCIDR, b)
	}
}

func TestCorefileForwardsNothing(t *testing.T) {
	b, err := render(corefile, corefileValues{Domain: "cluster.local", NodeIP: "192.0.2.2", Kubeconfig: "/k", HealthPort: 1, ReadyPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"kubernetes cluster.local", "bind 192.0.2.2", "pods insecure", "ready 127.0.0.1:2"} {
		if !strings.Contains(s, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "forward") {
		t.Errorf("Corefile forwards names out of the machine:\n%s", s)
	}
}

func TestContainerdConfig(t *testing.T) {
	b, err := render(containerdConfig, containerdValues{Root: "/r", State: "/s", Socket: "/s/c.sock", PauseImage: PauseImage, CNIBin: "/usr/lib/cni", CNIConf: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`restrict_oom_score_adj = true`, `sandbox_image = "` + PauseImage + `"`, `SystemdCgroup = false`, `address = "/s/c.sock"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("containerd config lacks %q", want)
		}
	}
}

func TestMountsUnder(t *testing.T) {
	got, err := mountsUnder("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1] != "/proc" {
		t.Fatalf("mounts under /proc: %q; want /proc itself last (deepest first)", got)
	}
	if none, _ := mountsUnder("/no/such/prefix"); len(none) != 0 {
		t.Errorf("mounts under a missing prefix: %q", none)
	}
}

// TestMarkedProcs starts a process carrying the cluster's marker and one
// without it: only the marked one counts as the cluster's. (killMarked
// itself is not called here: it would end a real cluster that another
// package's test runs at the same time.)
func TestMarkedProcs(t *testing.T) {
	marked := exec.Command("sleep", "60")
	marked.Env = append(os.Environ(), markerEnv+"=test")
	plain := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{marked, plain} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
	}
	procs, err := markedProcs()
	if err != nil {
		t.Fatal(err)
	}
	if cmd, ok := procs[marked.Process.Pid]; !ok || cmd != "sleep 60" {
		t.Fatalf("marked process %d not found as %q in %v", marked.Process.Pid, "sleep 60", procs)
	}
	if _, ok := procs[plain.Process.Pid]; ok {
		t.Fatalf("unmarked process %d counted as the cluster's", plain.Process.Pid)
	}
}

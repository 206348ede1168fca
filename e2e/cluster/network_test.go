package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// restrictedPod is a pod spec that Pod Security "restricted" admits,
// running the babelfish image with args.
func restrictedPod(image string, args ...string) corev1.PodSpec {
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr(true),
			RunAsUser:      ptr(int64(65532)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		AutomountServiceAccountToken: ptr(false),
		Containers: []corev1.Container{{
			Name:            "main",
			Image:           image,
			ImagePullPolicy: corev1.PullNever,
			Args:            args,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr(false),
				ReadOnlyRootFilesystem:   ptr(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
	}
}

// testPodsServicesAndDNS runs pods of the project's image on the real
// kubelet in a "restricted" namespace, and checks the network a chart
// relies on: a ClusterIP Service answers from the host and from a pod, and
// CoreDNS resolves Service names and a StatefulSet's per-pod headless names
// inside pods.
func testPodsServicesAndDNS(t *testing.T) {
	const ns = "net-check"
	restrictedNamespace(t, ns)
	ctx := t.Context()
	labels := map[string]string{"app": "agent"}
	// The fake GPU agent is the image's smallest HTTP server.
	spec := restrictedPod(env.images.BabelfishRef(), "gpu-agent", "--fake-gpus=dgxa100", "--listen=:9400", "--publish=false", "--pod-resources-socket=")
	spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 9400}}
	spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 1}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr(int32(2)),
			ServiceName:         "agent-hl",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template:            corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	if _, err := env.cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port := []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Spec: corev1.ServiceSpec{Selector: labels, Ports: port}},
		{ObjectMeta: metav1.ObjectMeta{Name: "agent-hl"}, Spec: corev1.ServiceSpec{Selector: labels, Ports: port, ClusterIP: corev1.ClusterIPNone}},
	} {
		if _, err := env.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods := waitPodsReady(t, ns, "app=agent", 2, 3*time.Minute)
	for _, p := range pods {
		if p.Status.PodIP == "" || !strings.HasPrefix(p.Status.PodIP, "10.244.") {
			t.Errorf("pod %s has address %q, want one from the bridge's 10.244.0.0/24", p.Name, p.Status.PodIP)
		}
	}

	// From the host, through kube-proxy's rules.
	addr := serviceAddr(t, ns, "agent", "http")
	body := httpGetEventually(t, "http://"+addr+"/metrics", time.Minute)
	if !strings.Contains(body, "DCGM_FI_DEV_GPU_UTIL") && !strings.Contains(body, "babelfish_gpu") {
		t.Errorf("the Service answered, but not with GPU metrics:\n%.400s", body)
	}

	// From a pod: Service name, per-pod headless names, and the API
	// server's own Service.
	urls := []string{
		"http://agent/healthz",
		"http://agent." + ns + ".svc.cluster.local/healthz",
		"http://agent-0.agent-hl." + ns + ".svc.cluster.local:9400/healthz",
		"http://agent-1.agent-hl." + ns + ".svc.cluster.local:9400/healthz",
	}
	for i, u := range urls {
		runJob(t, ns, fmt.Sprintf("check-%d", i), "check", "http", u, "--timeout=60s")
	}
	runJob(t, ns, "check-apiserver", "check", "http", "https://kubernetes.default.svc/healthz", "--insecure-skip-verify", "--expect-body=ok", "--timeout=60s")
}

// runJob runs the image with args as a Job in ns and fails t unless it
// succeeds, with its logs.
func runJob(t *testing.T, ns, name string, args ...string) {
	t.Helper()
	ctx := t.Context()
	spec := restrictedPod(env.images.BabelfishRef(), args...)
	spec.RestartPolicy = corev1.RestartPolicyNever
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template:     corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"job": name}}, Spec: spec},
		},
	}
	if _, err := env.cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var done *batchv1.Job
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		j, err := env.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		done = j
		return j.Status.Succeeded > 0 || j.Status.Failed > 0, nil
	})
	if err != nil || done.Status.Succeeded == 0 {
		t.Errorf("job %s (%s) did not succeed: %v\n%s%s", name, strings.Join(args, " "), err, describePods(ns), podLogs(ns, "job="+name))
	}
}

// httpGetEventually GETs url until it answers 200, and returns the body.
func httpGetEventually(t *testing.T, url string, timeout time.Duration) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("%s: %.200s", resp.Status, b)
		}
		last = err
		time.Sleep(time.Second)
	}
	t.Fatalf("GET %s: no 200 within %v: %v", url, timeout, last)
	return ""
}

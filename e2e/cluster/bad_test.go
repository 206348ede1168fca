package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// leftObjects lists what a release named rel left in ns: every kind the
// chart makes, by its instance label.
func leftObjects(t *testing.T, ns, rel string) []string {
	t.Helper()
	ctx := t.Context()
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + rel}
	var left []string
	if l, err := env.cs.AppsV1().Deployments(ns).List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "deployment/"+o.Name)
		}
	}
	if l, err := env.cs.AppsV1().DaemonSets(ns).List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "daemonset/"+o.Name)
		}
	}
	if l, err := env.cs.AppsV1().StatefulSets(ns).List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "statefulset/"+o.Name)
		}
	}
	if l, err := env.cs.CoreV1().Services(ns).List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "service/"+o.Name)
		}
	}
	if l, err := env.cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if strings.HasPrefix(o.Name, "sh.helm.release.v1."+rel+".") || o.Labels["app.kubernetes.io/instance"] == rel {
				left = append(left, "secret/"+o.Name)
			}
		}
	}
	if l, err := env.cs.RbacV1().ClusterRoles().List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "clusterrole/"+o.Name)
		}
	}
	return left
}

// testBadInputLeavesNothing installs the chart wrong three ways. Each
// fails with an error that says what is wrong, and leaves no release and
// no object behind (--atomic rolls back what was made).
func testBadInputLeavesNothing(t *testing.T) {
	requireInstalled(t)
	tests := []struct {
		name string
		args []string
		// want: substrings of helm's error, or of the cluster's events
		// while it tried.
		want   []string
		events []string
	}{
		{
			name: "values the schema refuses",
			args: []string{"--set", "serving.replcas=3", "--set", "serving.grpcPort=70000"},
			want: []string{"values don't meet the specifications of the schema", "replcas", "grpcPort"},
		},
		{
			name:   "a missing image",
			args:   []string{"--set", "image.tag=no-such-tag", "--wait", "--timeout", "60s", "--atomic"},
			want:   []string{"failed"},
			events: []string{`"babelfish/babelfish:no-such-tag" is not present with pull policy of Never`},
		},
		{
			name: "a namespace that refuses the pod",
			// The real-GPU agent needs the host's pod-resources socket,
			// which "restricted" forbids.
			args: []string{"--set", "gpuAgent.fakeGPUs=", "--wait", "--timeout", "60s", "--atomic"},
			want: []string{"restricted"},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := "bad-" + string(rune('a'+i))
			restrictedNamespace(t, ns)
			rel := "bad"
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			seen := make(chan string, 1)
			if len(tc.events) > 0 {
				go watchEvents(ctx, ns, tc.events, seen)
			}
			args := append([]string{"install", rel, chartDir(t), "--namespace", ns, "-f", localValues(t),
				"--set", "image.tag=" + tagA, "--set", "minio.image.tag=" + tagA}, tc.args...)
			out, err := helm(ctx, args...)
			if err == nil {
				t.Fatalf("helm install succeeded; want an error:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("helm's error lacks %q:\n%s", w, out)
				}
			}
			if len(tc.events) > 0 {
				select {
				case ev := <-seen:
					t.Logf("the cluster said: %s", ev)
				default:
					t.Errorf("no event in %s said %q while helm waited", ns, tc.events)
				}
			}
			if st, err := helm(ctx, "status", rel, "--namespace", ns); err == nil {
				t.Errorf("a release is left:\n%s", st)
			}
			if left := leftObjects(t, ns, rel); len(left) > 0 {
				t.Errorf("objects left half-made: %v", left)
			}
		})
	}
}

// watchEvents sends the first event message in ns that holds every one of
// want.
func watchEvents(ctx context.Context, ns string, want []string, seen chan<- string) {
	for ctx.Err() == nil {
		evs, err := env.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, e := range evs.Items {
				all := true
				for _, w := range want {
					all = all && strings.Contains(e.Message, w)
				}
				if all {
					seen <- e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name + ": " + e.Reason + ": " + e.Message
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

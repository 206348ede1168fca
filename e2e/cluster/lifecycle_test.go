package cluster

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"babelfish.dev/babelfish/internal/kube"
)

// testStopLeavesNothingAndStartsAgain runs last: it stops the suite's
// cluster and checks that nothing of it is left on the machine (processes,
// mounts, network namespaces, bridge, iptables chains, cgroups); then a
// cluster whose kubelet cannot start fails naming the kubelet and its log,
// and leaves nothing either; then a second cluster starts on the same
// machine and stops clean.
func testStopLeavesNothingAndStartsAgain(t *testing.T) {
	ctx := t.Context()
	dir := env.cl.Dir()
	if err := env.cl.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := kube.Leftovers(dir); len(left) > 0 {
		t.Fatalf("the stopped cluster left: %v", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its temporary directory %s is still there", dir)
	}

	t.Run("a part that does not start", func(t *testing.T) {
		_, err := kube.Start(ctx, kube.WithExtraArgs("kubelet", "--no-such-flag"), kube.WithStartTimeout(time.Minute), kube.WithLogger(env.log))
		var pe *kube.PartError
		if !errors.As(err, &pe) {
			t.Fatalf("start with a broken kubelet: %v; want a *kube.PartError", err)
		}
		if pe.Part != "kubelet" || pe.Log == "" {
			t.Errorf("the error names part %q with log %q; want the kubelet and its log", pe.Part, pe.Log)
		}
		t.Logf("the error: %v", err)
		if left := kube.Leftovers(""); len(left) > 0 {
			t.Errorf("the failed start left: %v", left)
		}
	})

	t.Run("a second start", func(t *testing.T) {
		cl, err := kube.Start(ctx, kube.WithImages(env.images.Pause()), kube.WithLogger(env.log))
		if err != nil {
			t.Fatalf("second start on the same machine: %v", err)
		}
		t.Logf("second start took %v", cl.StartupDuration().Round(time.Millisecond))
		d := cl.Dir()
		if err := cl.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if left := kube.Leftovers(d); len(left) > 0 {
			t.Errorf("the second cluster left: %v", left)
		}
	})
}

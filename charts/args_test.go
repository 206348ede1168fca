package charts

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestArgsParse builds the babelfish binary and runs every container
// command line the chart renders with --help appended: a flag the binary
// does not have fails cobra's parse, so the chart cannot drift from the
// code. Commands still planned (no flags yet) are listed in the log.
func TestArgsParse(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "babelfish")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "babelfish.dev/babelfish/cmd/babelfish")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	checked := 0
	var sets [][]string
	for _, vs := range valuesSets() {
		sets = append(sets, vs.args())
	}
	for _, set := range sets {
		for _, o := range render(t, set...) {
			// Workloads' pod templates, and the `helm test` Pods.
			ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			if o.GetKind() == "Pod" {
				ctrs, _, _ = unstructured.NestedSlice(o.Object, "spec", "containers")
			}
			for _, c := range ctrs {
				cm := c.(map[string]any)
				img, _ := cm["image"].(string)
				if !strings.HasPrefix(img, "babelfish/babelfish:") {
					continue // MinIO
				}
				args, _, _ := unstructured.NestedStringSlice(cm, "args")
				key := strings.Join(args, " ")
				if len(args) == 0 || seen[key] {
					continue
				}
				seen[key] = true
				// `check http URL ...`: the subcommand's help, not the group's.
				sub := args[:1]
				if args[0] == "check" && len(args) > 1 {
					sub = args[:2]
				}
				help, err := exec.CommandContext(t.Context(), bin, append(slices.Clone(sub), "--help")...).CombinedOutput()
				if err != nil {
					t.Fatalf("babelfish %s --help: %v\n%s", args[0], err, help)
				}
				if strings.Contains(string(help), "Not built yet") {
					t.Logf("%s/%s: `babelfish %s` is still planned: its flags %q cannot be checked yet", o.GetKind(), o.GetName(), args[0], args[1:])
					continue
				}
				checked++
				out, err := exec.CommandContext(t.Context(), bin, append(args, "--help")...).CombinedOutput()
				if err != nil {
					t.Errorf("%s/%s (%v): babelfish %s --help: %v\n%s", o.GetKind(), o.GetName(), set, key, err, out)
				}
			}
		}
	}
	if checked < 2 {
		t.Errorf("checked %d command lines; want at least the scheduler's and the gpu-agent's", checked)
	}
	t.Logf("%d of %d distinct command lines checked against the binary", checked, len(seen))
}

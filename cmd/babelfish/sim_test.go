package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// simFiles writes a one-node, one-GPU cluster and three whole-GPU tasks
// that queue behind each other: a 0..10, b 10..15, c 15..18 (trace times
// in seconds, 100x the replay's with --time-scale 100).
func simFiles(t *testing.T) (nodes, pods string) {
	t.Helper()
	dir := t.TempDir()
	nodes = filepath.Join(dir, "nodes.csv")
	pods = filepath.Join(dir, "pods.csv")
	if err := os.WriteFile(nodes, []byte("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,65536,1,T4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
	rows := "a,1000,1000,1,1000,,LS,Succeeded,0,10,0\n" +
		"b,1000,1000,1,1000,,LS,Succeeded,100,105,100\n" +
		"c,1000,1000,1,1000,,LS,Succeeded,200,203,200\n"
	if err := os.WriteFile(pods, []byte(head+rows), 0o644); err != nil {
		t.Fatal(err)
	}
	return nodes, pods
}

func TestSimReplayDurations(t *testing.T) {
	nodes, pods := simFiles(t)
	out, err := run(t, "sim", "--nodes", nodes, "--pods", pods, "--policy", "bestfit", "--tune", "0", "--replay-durations", "--time-scale", "100")
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	var res struct {
		Placed int `json:"placed"`
		Replay *struct {
			TimeScale  float64            `json:"time_scale"`
			QueueDelay map[string]float64 `json:"queue_delay_s"`
			JCT        map[string]float64 `json:"jct_s"`
			Makespan   float64            `json:"makespan_s"`
			NeverRan   int                `json:"never_ran"`
			UtilMean   float64            `json:"util_mean_percent"`
			UtilCurve  []float64          `json:"util_curve"`
		} `json:"replay"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	r := res.Replay
	if r == nil {
		t.Fatalf("no replay object:\n%s", out)
	}
	// Delays 0, 9, 13; JCTs 10, 14, 16; the GPU is busy from 0 to 18.
	want := map[string][2]float64{"mean": {22.0 / 3, 40.0 / 3}, "p50": {9, 14}, "p99": {13, 16}, "max": {13, 16}}
	for k, w := range want {
		if r.QueueDelay[k] != w[0] || r.JCT[k] != w[1] {
			t.Errorf("%s: queue delay %v, jct %v; want %v, %v", k, r.QueueDelay[k], r.JCT[k], w[0], w[1])
		}
	}
	if res.Placed != 3 || r.NeverRan != 0 || r.Makespan != 18 || r.UtilMean != 100 || r.TimeScale != 100 || len(r.UtilCurve) != 100 {
		t.Errorf("placed %d never ran %d makespan %v util %v time scale %v curve %d", res.Placed, r.NeverRan, r.Makespan, r.UtilMean, r.TimeScale, len(r.UtilCurve))
	}

	// Without --replay-durations there is no replay object.
	out, err = run(t, "sim", "--nodes", nodes, "--pods", pods, "--policy", "bestfit", "--tune", "0")
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	if strings.Contains(out, `"replay"`) {
		t.Errorf("arrival-only run printed a replay object:\n%s", out)
	}
}

func TestSimFlags(t *testing.T) {
	nodes, pods := simFiles(t)
	out, err := run(t, "sim", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"--replay-durations", "--time-scale", "queueing delay", "FIFO with backfill"} {
		if !strings.Contains(out, s) {
			t.Errorf("sim --help does not mention %q", s)
		}
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--time-scale", "10"}, "--time-scale: only applies with --replay-durations"},
		{[]string{"--replay-durations", "--time-scale", "0"}, "--time-scale 0: must be a finite number > 0"},
		{[]string{"--replay-durations", "--time-scale", "-3"}, "--time-scale -3"},
	}
	for _, tc := range tests {
		args := append([]string{"sim", "--nodes", nodes, "--pods", pods, "--tune", "0"}, tc.args...)
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	// A pod list without times cannot be replayed with durations.
	untimed := filepath.Join(t.TempDir(), "pods.csv")
	if err := os.WriteFile(untimed, []byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "sim", "--nodes", nodes, "--pods", untimed, "--replay-durations"); err == nil || !strings.Contains(err.Error(), "sim task p: no creation_time and deletion_time") {
		t.Errorf("untimed pods: err = %v", err)
	}
}

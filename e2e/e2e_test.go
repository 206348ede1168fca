package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/trainer"
)

// evalJob runs `babelfish eval` on a job's latest checkpoint and returns
// the report.
func evalJob(t *testing.T, job string) *trainer.EvalReport {
	t.Helper()
	out, err := s.up.babelfish(context.Background(), "eval", "--job", job, "--per-dir", "4", "--json", "--workers", "2")
	if err != nil {
		t.Fatalf("eval %s: %v\n%s", job, err, out)
	}
	// The report is the JSON object on stdout; logs go before it.
	i := strings.Index(out, "{\n")
	if i < 0 {
		t.Fatalf("eval %s printed no JSON report:\n%s", job, out)
	}
	var rep trainer.EvalReport
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&rep); err != nil {
		t.Fatalf("eval %s report: %v\n%s", job, err, out)
	}
	return &rep
}

func split(t *testing.T, rep *trainer.EvalReport, name string) trainer.SplitScore {
	t.Helper()
	for _, sp := range rep.Splits {
		if sp.Name == name {
			return sp
		}
	}
	t.Fatalf("eval report has no split %q: %+v", name, rep.Splits)
	return trainer.SplitScore{}
}

// TestTrainCheckpointEvaluate: a dataset in the store, a 2-rank job through
// submit on up's local executor, checkpoints committed, and the trained
// model says the right thing more often than the copy-the-input baseline,
// by the concept-accuracy evaluator.
func TestTrainCheckpointEvaluate(t *testing.T) {
	start := time.Now()
	submit(t, jobSpec{name: "train", steps: 1500, checkpointEvery: 250, backoffLimit: 3})
	j := waitJob(t, "train", 5*time.Minute, "success", succeeded)
	t.Logf("trained 1500 steps on 2 ranks in %v; loss %.3f", time.Since(start).Round(time.Second), *j.Status.Loss)
	if j.Status.Step != 1500 || j.Status.LatestCheckpoint == nil || j.Status.LatestCheckpoint.Step != 1500 || j.Status.Restarts != 0 {
		t.Fatalf("status %+v", j.Status)
	}
	for rank := range 2 {
		out, err := s.up.babelfish(context.Background(), "logs", "train", "--rank", strconv.Itoa(rank))
		if err != nil || !strings.Contains(out, "collective: joined") || !strings.Contains(out, "trainer done") {
			t.Fatalf("rank %d log (%v):\n%s", rank, err, tail(out, 3000))
		}
	}
	rep := evalJob(t, "train")
	uv := split(t, rep, "unseen_voices")
	t.Logf("unseen voices: model %.1f%% (%d/%d), floor %.1f%%, copy %.1f%%",
		100*uv.Model.Acc, uv.Model.Correct, uv.Model.N, 100*uv.Floor.Acc, 100*uv.Copy.Acc)
	if uv.Model.N == 0 || uv.Model.Acc <= uv.Copy.Acc {
		t.Fatalf("the trained model does not beat copying the input: model %.3f, copy %.3f", uv.Model.Acc, uv.Copy.Acc)
	}
}

// stepLine matches the trainer's progress lines.
var stepLine = regexp.MustCompile(`msg=train job=\S+ rank=\d+ step=(\d+)`)

// TestWorkerKilled: SIGKILL on rank 1 mid-training. The gang is torn down,
// restarted after its backoff from the newest checkpoint (losing less than
// one interval), and the job completes.
func TestWorkerKilled(t *testing.T) {
	const every, steps = 1000, 8000
	submit(t, jobSpec{name: "kill", steps: steps, checkpointEvery: every, backoffLimit: 3})
	waitJob(t, "kill", 5*time.Minute, "a step past the second checkpoint", func(*v1alpha1.TrainingJob) bool {
		return lastLoggedStep("kill") >= 2*every+every/2
	})
	pid := rankPID(t, "kill", 1)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitJob(t, "kill", 30*time.Second, "the restart", func(j *v1alpha1.TrainingJob) bool {
		return j.Status.Restarts == 1
	})
	// The newest committed checkpoint once the gang is down: what the
	// restart must resume from.
	latest, err := trainer.LatestCheckpoint(context.Background(), s.store, "kill")
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, "kill", 5*time.Minute, "success after the restart", succeeded)
	if j.Status.Restarts != 1 || j.Status.GangGeneration != 2 || j.Status.Step != steps {
		t.Fatalf("status %+v", j.Status)
	}
	log0, err := s.up.babelfish(context.Background(), "logs", "kill")
	if err != nil {
		t.Fatal(err)
	}
	gens := strings.Split(log0, "--- babelfish local executor: kill generation 2")
	if len(gens) != 2 {
		t.Fatalf("rank 0 log has no second generation:\n%s", tail(log0, 4000))
	}
	// The last step generation 1 reached, from its progress lines.
	reached := int64(0)
	for _, m := range stepLine.FindAllStringSubmatch(gens[0], -1) {
		reached, _ = strconv.ParseInt(m[1], 10, 64)
	}
	resumed := regexp.MustCompile(`msg=resumed .*checkpoint=(\S+) step=(\d+)`).FindStringSubmatch(gens[1])
	if resumed == nil {
		t.Fatalf("generation 2 did not resume from a checkpoint:\n%s", tail(gens[1], 3000))
	}
	from, _ := strconv.ParseInt(resumed[2], 10, 64)
	t.Logf("rank 1 killed at about step %d; restarted %v later from %s (step %d): lost %d steps, interval %d",
		reached, j.Status.StartedAt.Sub(killed).Round(time.Millisecond), resumed[1], from, reached-from, every)
	if resumed[1] != latest {
		t.Fatalf("resumed from %s, want the newest checkpoint %s", resumed[1], latest)
	}
	if reached-from >= every {
		t.Fatalf("lost %d steps (from step %d back to %d): more than one interval of %d", reached-from, reached, from, every)
	}
}

// rankPID is the process of one rank, from the executor's job record.
func rankPID(t *testing.T, job string, rank int) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.up.dir, "executor", "jobs", job+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Procs []struct {
			Rank int `json:"rank"`
			PID  int `json:"pid"`
		} `json:"procs"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	for _, p := range rec.Procs {
		if p.Rank == rank {
			return p.PID
		}
	}
	t.Fatalf("job %s has no live rank %d: %s", job, rank, raw)
	return 0
}

// TestObjectStoreOutage: MinIO is stopped for 10 s mid-training. Training
// pauses (the ranks retry, or the gang fails and waits out its backoff),
// resumes when the store is back, and completes; every checkpoint the job
// committed reads back whole (checksums), none half-written is listed.
func TestObjectStoreOutage(t *testing.T) {
	const steps = 8000
	submit(t, jobSpec{name: "outage", steps: steps, checkpointEvery: 200, backoffLimit: 10})
	waitJob(t, "outage", 5*time.Minute, "a first checkpoint", func(*v1alpha1.TrainingJob) bool {
		return lastLoggedStep("outage") >= 500
	})
	before, err := trainer.LatestCheckpoint(context.Background(), s.store, "outage")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.minio.Shutdown(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(10 * time.Second)
	if err := s.minio.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("MinIO down for %v; newest checkpoint before: %s", time.Since(down).Round(time.Millisecond), before)
	j := waitJob(t, "outage", 6*time.Minute, "success after the outage", succeeded)
	if j.Status.Step != steps {
		t.Fatalf("status %+v", j.Status)
	}
	pause, at := longestPause(t, "outage")
	t.Logf("completed with %d gang restarts; training paused %v at step %d", j.Status.Restarts, pause.Round(time.Millisecond), at)
	if pause < 5*time.Second {
		t.Fatalf("training never paused for the outage (longest gap between progress lines %v)", pause)
	}

	prefixes, err := s.store.ListArtifacts(context.Background(), "checkpoints/outage/")
	if err != nil {
		t.Fatal(err)
	}
	if len(prefixes) < 2 {
		t.Fatalf("checkpoints: %v", prefixes)
	}
	for _, p := range prefixes {
		if strings.Contains(strings.TrimPrefix(p, "checkpoints/outage/"), "/eval/") {
			continue
		}
		ck, err := trainer.LoadCheckpoint(context.Background(), s.store, p)
		if err != nil {
			t.Errorf("checkpoint %s is corrupt: %v", p, err)
			continue
		}
		if want := fmt.Sprintf("checkpoints/outage/%012d/", ck.State.Step); p != want {
			t.Errorf("checkpoint %s holds step %d", p, ck.State.Step)
		}
	}
	t.Logf("%d committed checkpoints, every one read back with its checksums", len(prefixes))
}

// TestUpRestart: `up` stops (SIGTERM) while a job runs; the ranks
// checkpoint; a new `up` on the same state dir finds the job, places it
// again from that checkpoint, and it completes.
func TestUpRestart(t *testing.T) {
	submit(t, jobSpec{name: "restart", steps: 6000, checkpointEvery: 2000, backoffLimit: 3})
	waitJob(t, "restart", 5*time.Minute, "training under way", func(j *v1alpha1.TrainingJob) bool {
		return j.Status.Phase == v1alpha1.PhaseRunning && lastLoggedStep("restart") >= 500
	})
	dir := s.up.dir
	if err := s.up.stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt, err := trainer.LatestCheckpoint(context.Background(), s.store, "restart")
	if err != nil {
		t.Fatalf("no checkpoint written on stop: %v", err)
	}
	up, err := startUp(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	s.up = up
	j := waitJob(t, "restart", 5*time.Minute, "success after up restarted", succeeded)
	if j.Status.GangGeneration != 2 || j.Status.Restarts != 0 {
		t.Fatalf("status %+v", j.Status)
	}
	log0, err := s.up.babelfish(context.Background(), "logs", "restart")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log0, "msg=resumed job=restart rank=0 checkpoint="+stoppedAt) {
		t.Fatalf("did not resume from %s (written on stop):\n%s", stoppedAt, tail(log0, 4000))
	}
	// The earlier jobs are still listed, with their outcome.
	out, err := s.up.babelfish(context.Background(), "jobs")
	if err != nil || !strings.Contains(out, "train") || !strings.Contains(out, "Succeeded") {
		t.Fatalf("jobs after restart (%v):\n%s", err, out)
	}
	t.Logf("stopped with checkpoint %s, resumed after up restarted", stoppedAt)
}

// lastLoggedStep is the last step rank 0 logged (0 before any).
func lastLoggedStep(job string) int64 {
	raw, err := os.ReadFile(filepath.Join(s.up.dir, "executor", "logs", job, "rank-0.log"))
	if err != nil {
		return 0
	}
	ms := stepLine.FindAllSubmatch(raw, -1)
	if len(ms) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(string(ms[len(ms)-1][1]), 10, 64)
	return n
}

// trainLine is a rank's progress line, with its time and step.
var trainLine = regexp.MustCompile(`time=(\S+) level=\S+ msg=train job=\S+ rank=0 step=(\d+)`)

// longestPause is the longest time between two consecutive progress lines
// of rank 0, and the step after it.
func longestPause(t *testing.T, job string) (time.Duration, int64) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.up.dir, "executor", "logs", job, "rank-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		prev  time.Time
		best  time.Duration
		after int64
	)
	for _, m := range trainLine.FindAllSubmatch(raw, -1) {
		ts, err := time.Parse(time.RFC3339Nano, string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		if !prev.IsZero() && ts.Sub(prev) > best {
			best = ts.Sub(prev)
			after, _ = strconv.ParseInt(string(m[2]), 10, 64)
		}
		prev = ts
	}
	return best, after
}

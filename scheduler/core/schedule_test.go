package core

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func gpuJob(name, queue string, prio int32, workers, gpus int) Job {
	return Job{Name: name, Queue: queue, Priority: prio, Workers: workers,
		Worker: Request{CPUMilli: 1000, GPUs: gpus, GPUMilli: 1000}, Created: t0}
}

// running binds a job onto the first GPUs of a node, starting at first.
func running(j Job, node string, first int, started, ckpt time.Duration) RunningJob {
	rj := RunningJob{Job: j, Started: t0.Add(-started)}
	if ckpt > 0 {
		rj.LastCheckpoint = t0.Add(-ckpt)
	}
	g := first
	for w := range j.Workers {
		b := Binding{Job: j.Name, Worker: w, Node: node, CPUMilli: j.Worker.CPUMilli}
		for range j.Worker.GPUs {
			b.GPUs = append(b.GPUs, GPUShare{Index: g, Milli: 1000})
			g++
		}
		rj.Bindings = append(rj.Bindings, b)
	}
	return rj
}

func boundJobs(p *Plan) []string {
	var out []string
	for _, b := range p.Bindings {
		if !slices.Contains(out, b.Job) {
			out = append(out, b.Job)
		}
	}
	slices.Sort(out)
	return out
}

func victims(p *Plan) []string {
	var out []string
	for _, pr := range p.Preemptions {
		out = append(out, pr.Victim)
	}
	slices.Sort(out)
	return out
}

func reason(p *Plan, job string) string {
	for _, pj := range p.Pending {
		if pj.Job == job {
			return pj.Reason
		}
	}
	return ""
}

func TestSchedule(t *testing.T) {
	node8 := []NodeInfo{UniformNode("n", 64000, 512000, "H100", 8)}
	node4 := []NodeInfo{UniformNode("n", 64000, 512000, "H100", 4)}
	evicted := gpuJob("tired", "", 0, 1, 4)
	evicted.Evictions = 3
	tests := []struct {
		name        string
		snap        Snapshot
		preempt     bool
		wantBound   []string
		wantVictims []string
		wantReason  map[string]string // pending job -> substring of its reason
	}{
		{
			name: "within nominal quota",
			snap: Snapshot{Nodes: node8, Queues: []Queue{{Name: "a", NominalGPUMilli: 4000}},
				Pending: []Job{gpuJob("j", "a", 0, 1, 4)}},
			wantBound: []string{"j"},
		},
		{
			name: "over quota with no borrowing",
			snap: Snapshot{Nodes: node8, Queues: []Queue{{Name: "a", NominalGPUMilli: 4000}, {Name: "b", NominalGPUMilli: 4000}},
				Pending: []Job{gpuJob("j", "a", 0, 2, 4)}},
			wantReason: map[string]string{"j": "queue a: needs 4000 GPU milli beyond its nominal 4000, borrowing limit is 0"},
		},
		{
			name: "borrows idle quota of another queue",
			snap: Snapshot{Nodes: node8, Queues: []Queue{{Name: "a", NominalGPUMilli: 4000, BorrowingLimitGPUMilli: -1}, {Name: "b", NominalGPUMilli: 4000}},
				Pending: []Job{gpuJob("j", "a", 0, 2, 4)}},
			wantBound: []string{"j"},
		},
		{
			name: "cannot borrow quota in use",
			snap: Snapshot{Nodes: node8, Queues: []Queue{{Name: "a", NominalGPUMilli: 4000, BorrowingLimitGPUMilli: -1}, {Name: "b", NominalGPUMilli: 4000}},
				Running: []RunningJob{running(gpuJob("b1", "b", 0, 1, 2), "n", 0, time.Hour, 0)},
				Pending: []Job{gpuJob("j", "a", 0, 2, 4)}},
			wantReason: map[string]string{"j": "other queues leave 2000 idle"},
		},
		{
			name:       "unknown queue",
			snap:       Snapshot{Nodes: node8, Pending: []Job{gpuJob("j", "nope", 0, 1, 1)}},
			wantReason: map[string]string{"j": `queue "nope": not found`},
		},
		{
			name:       "invalid job stays pending with the field named",
			snap:       Snapshot{Nodes: node8, Pending: []Job{{Name: "bad", Workers: 1, Worker: Request{GPUs: 2, GPUMilli: 10}}}},
			wantReason: map[string]string{"bad": "gpu_milli 10: must be 1000 when gpus is 2"},
		},
		{
			name: "gang waits whole rather than partly",
			snap: Snapshot{Nodes: node4, Running: []RunningJob{running(gpuJob("r", "", 5, 1, 2), "n", 0, time.Hour, 0)},
				Pending: []Job{gpuJob("big", "", 0, 2, 2)}},
			wantReason: map[string]string{"big": "2 workers wanted, free capacity for 1"},
		},
		{
			name:       "higher priority first",
			snap:       Snapshot{Nodes: node4, Pending: []Job{gpuJob("low", "", 0, 1, 4), gpuJob("high", "", 9, 1, 4)}},
			wantBound:  []string{"high"},
			wantReason: map[string]string{"low": "no node fits one worker"},
		},
		{
			name:    "preempts the job that loses least work",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node8,
				Running: []RunningJob{
					running(gpuJob("old-ckpt", "", 0, 1, 4), "n", 0, 3*time.Hour, 50*time.Minute),
					running(gpuJob("fresh-ckpt", "", 0, 1, 4), "n", 4, 3*time.Hour, time.Minute),
				},
				Pending: []Job{gpuJob("urgent", "", 10, 1, 4)}},
			wantVictims: []string{"fresh-ckpt"},
			wantReason:  map[string]string{"urgent": "waiting for 1 preempted job(s)"},
		},
		{
			name:    "never-checkpointed job loses everything since its start",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node8,
				Running: []RunningJob{
					running(gpuJob("no-ckpt", "", 0, 1, 4), "n", 0, 10*time.Minute, 0),
					running(gpuJob("ckpt", "", 0, 1, 4), "n", 4, 3*time.Hour, 20*time.Minute),
				},
				Pending: []Job{gpuJob("urgent", "", 10, 1, 4)}},
			wantVictims: []string{"no-ckpt"},
		},
		{
			name:    "evicts only as many as needed",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node8,
				Running: []RunningJob{
					running(gpuJob("a", "", 0, 1, 2), "n", 0, time.Hour, time.Minute),
					running(gpuJob("b", "", 0, 1, 2), "n", 2, time.Hour, 2*time.Minute),
					running(gpuJob("c", "", 0, 1, 4), "n", 4, time.Hour, 3*time.Minute),
				},
				Pending: []Job{gpuJob("urgent", "", 10, 1, 4)}},
			// a+b free 4 GPUs losing 3 minutes; c alone would lose 3 too but
			// a and b are tried first (least lost work each), and both are needed.
			wantVictims: []string{"a", "b"},
		},
		{
			name:    "equal priority is not preempted",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node4,
				Running: []RunningJob{running(gpuJob("r", "", 10, 1, 4), "n", 0, time.Hour, 0)},
				Pending: []Job{gpuJob("p", "", 10, 1, 4)}},
			wantReason: map[string]string{"p": "no lower-priority job to preempt"},
		},
		{
			name:    "a job evicted too often is spared",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node8,
				Running: []RunningJob{
					running(evicted, "n", 0, time.Hour, time.Minute),
					running(gpuJob("other", "", 0, 1, 4), "n", 4, time.Hour, 30*time.Minute),
				},
				Pending: []Job{gpuJob("urgent", "", 10, 1, 4)}},
			wantVictims: []string{"other"},
		},
		{
			name:    "terminating jobs are not chosen again and nothing cascades",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node8,
				Running: []RunningJob{
					func() RunningJob {
						r := running(gpuJob("going", "", 0, 1, 4), "n", 0, time.Hour, time.Minute)
						r.Terminating = true
						return r
					}(),
					running(gpuJob("staying", "", 0, 1, 4), "n", 4, time.Hour, 30*time.Minute),
				},
				Pending: []Job{gpuJob("u1", "", 10, 1, 4), gpuJob("u2", "", 10, 1, 4)}},
			// u1 takes "staying"; u2 finds nobody left (going is already terminating).
			wantVictims: []string{"staying"},
			wantReason:  map[string]string{"u2": "no lower-priority job to preempt"},
		},
		{
			name:    "a queue within its nominal quota reclaims from a borrower",
			preempt: true,
			snap: Snapshot{Now: t0, Nodes: node8,
				Queues:  []Queue{{Name: "a", NominalGPUMilli: 4000}, {Name: "b", NominalGPUMilli: 4000, BorrowingLimitGPUMilli: -1}},
				Running: []RunningJob{running(gpuJob("borrower", "b", 0, 1, 8), "n", 0, time.Hour, time.Minute)},
				Pending: []Job{gpuJob("owner", "a", 0, 1, 4)}},
			wantVictims: []string{"borrower"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Schedule(&tc.snap, Config{Scorer: BestFit{}, Preempt: tc.preempt, GracePeriod: time.Minute})
			if err != nil {
				t.Fatalf("Schedule: %v", err)
			}
			if got := boundJobs(plan); !slices.Equal(got, tc.wantBound) {
				t.Fatalf("bound %v, want %v (pending %+v)", got, tc.wantBound, plan.Pending)
			}
			if got := victims(plan); !slices.Equal(got, tc.wantVictims) {
				t.Fatalf("victims %v, want %v (pending %+v)", got, tc.wantVictims, plan.Pending)
			}
			for _, pr := range plan.Preemptions {
				if pr.GracePeriod != time.Minute || !pr.Deadline.Equal(tc.snap.Now.Add(time.Minute)) {
					t.Fatalf("preemption %+v: want a one-minute grace period", pr)
				}
			}
			for job, want := range tc.wantReason {
				if got := reason(plan, job); !strings.Contains(got, want) {
					t.Fatalf("job %s pending reason %q, want %q", job, got, want)
				}
			}
		})
	}
}

func TestScheduleFairShare(t *testing.T) {
	// Four GPUs lent by an idle queue; a (weight 1) and b (weight 3) borrow
	// them in proportion to their weights.
	snap := Snapshot{
		Nodes: []NodeInfo{UniformNode("n", 64000, 512000, "H100", 4)},
		Queues: []Queue{
			{Name: "lender", NominalGPUMilli: 4000},
			{Name: "a", Weight: 1, BorrowingLimitGPUMilli: -1},
			{Name: "b", Weight: 3, BorrowingLimitGPUMilli: -1},
		},
	}
	for i := range 4 {
		snap.Pending = append(snap.Pending, gpuJob(fmt.Sprintf("a%d", i), "a", 0, 1, 1), gpuJob(fmt.Sprintf("b%d", i), "b", 0, 1, 1))
	}
	plan, err := Schedule(&snap, Config{Scorer: BestFit{}})
	if err != nil {
		t.Fatal(err)
	}
	count := map[byte]int{}
	for _, j := range boundJobs(plan) {
		count[j[0]]++
	}
	if count['a'] != 1 || count['b'] != 3 {
		t.Fatalf("bound %v, want 1 from a and 3 from b", boundJobs(plan))
	}
}

func TestScheduleRejectsBadSnapshots(t *testing.T) {
	n := []NodeInfo{UniformNode("n", 1000, 1000, "T4", 1)}
	tests := []struct {
		name    string
		snap    Snapshot
		cfg     Config
		wantErr string
	}{
		{"no scorer", Snapshot{Nodes: n}, Config{}, "scorer: required"},
		{"negative grace", Snapshot{Nodes: n}, Config{Scorer: BestFit{}, GracePeriod: -time.Second}, "grace_period -1s"},
		{"binding on missing node", Snapshot{Nodes: n, Running: []RunningJob{{Job: gpuJob("r", "", 0, 1, 1), Bindings: []Binding{{Job: "r", Node: "gone"}}}}}, Config{Scorer: BestFit{}}, `node "gone": unknown`},
		{"duplicate queue", Snapshot{Nodes: n, Queues: []Queue{{Name: "q"}, {Name: "q"}}}, Config{Scorer: BestFit{}}, `queue "q": duplicate`},
		{"bad queue", Snapshot{Nodes: n, Queues: []Queue{{Name: "q", NominalGPUMilli: -1}}}, Config{Scorer: BestFit{}}, "nominal_gpu_milli -1"},
		{"duplicate job", Snapshot{Nodes: n, Pending: []Job{gpuJob("j", "", 0, 1, 1), gpuJob("j", "", 0, 1, 1)}}, Config{Scorer: BestFit{}}, `pending job "j": duplicate`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Schedule(&tc.snap, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Schedule = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

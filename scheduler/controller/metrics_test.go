package controller

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// gaugeJobs reads babelfish_scheduler_jobs from reg as "queue/phase" ->
// value.
func gaugeJobs(reg prometheus.Gatherer) (map[string]float64, error) {
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "babelfish_scheduler_jobs" {
			continue
		}
		for _, m := range f.GetMetric() {
			var q, ph string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "queue":
					q = l.GetValue()
				case "phase":
					ph = l.GetValue()
				}
			}
			out[q+"/"+ph] = m.GetGauge().GetValue()
		}
	}
	return out, nil
}

// testJobsGauge: after every pass, babelfish_scheduler_jobs{queue,phase}
// matches the phases the API server holds, zeros included for the queues
// that have jobs, while jobs run, wait, finish and are deleted.
func testJobsGauge(t *testing.T, e *env) {
	p := e.pool(t, "gauge")
	p.node("gauge-node-0", healthyGPUs(4))
	p.queue("gauge-a", 8, 1, -1)
	p.job("a-big", 1, 4, inQueue("gauge-a"))
	p.job("a-next", 1, 4, inQueue("gauge-a"))
	p.job("loose", 1, 2) // no queue
	p.kubelet(true)

	reg := prometheus.NewPedanticRegistry()
	var (
		mu         sync.Mutex
		mismatches []string
		seen       = map[string]bool{} // queue/phase seen non-zero
		checked    int
		// The job is deleted from AfterPass, on the loop's goroutine, so
		// no check races with the delete.
		deleteLoose, deleted = make(chan struct{}), make(chan error, 1)
		deleteOnce           sync.Once
	)
	expected := func() map[string]float64 {
		want := map[string]float64{}
		var l v1alpha1.TrainingJobList
		if err := p.e.c.list(t.Context(), resTrainingJobs, p.ns, &l); err != nil {
			t.Error(err)
			return nil
		}
		for _, j := range l.Items {
			for _, ph := range jobPhases {
				want[j.Spec.Queue+"/"+string(ph)] += 0
			}
			ph := j.Status.Phase
			if ph == "" {
				ph = v1alpha1.PhasePending
			}
			want[j.Spec.Queue+"/"+string(ph)]++
		}
		return want
	}
	r := p.start(Options{Registerer: reg, AfterPass: func(st PassStats) {
		if st.Err != nil {
			return // a cut pass may leave statuses unwritten
		}
		want := expected()
		got, err := gaugeJobs(reg)
		mu.Lock()
		defer mu.Unlock()
		checked++
		if err != nil {
			mismatches = append(mismatches, err.Error())
			return
		}
		if !maps.Equal(got, want) {
			mismatches = append(mismatches, fmt.Sprintf("pass %d: gauge %v, API %v", st.Pass, got, want))
		}
		for k, v := range got {
			if v > 0 {
				seen[k] = true
			}
		}
		select {
		case <-deleteLoose:
			deleteOnce.Do(func() {
				deleted <- p.e.c.rc.Delete().Namespace(p.ns).Resource(resTrainingJobs).Name("loose").Do(t.Context()).Error()
			})
		default:
		}
	}})

	// One 4-GPU gang runs, the others wait; then it finishes and the next
	// one moves in.
	eventually(t, 30*time.Second, "a-big runs", func() (bool, string) {
		ph := p.phases()
		return ph["a-big"] == v1alpha1.PhaseRunning, fmt.Sprint(ph)
	})
	for _, pod := range p.jobPods("a-big") {
		if err := setPhase(t.Context(), e.cs, &pod, corev1.PodSucceeded, 0); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "a-big succeeds and another job runs", func() (bool, string) {
		ph := p.phases()
		return ph["a-big"] == v1alpha1.PhaseSucceeded && (ph["a-next"] == v1alpha1.PhaseRunning || ph["loose"] == v1alpha1.PhaseRunning), fmt.Sprint(ph)
	})
	// Deleting the only job without a queue drops that queue's series.
	close(deleteLoose)
	select {
	case err := <-deleted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no pass ran to delete the job")
	}
	eventually(t, 30*time.Second, "the queue-less series go", func() (bool, string) {
		got, err := gaugeJobs(reg)
		if err != nil {
			return false, err.Error()
		}
		_, ok := got["/"+string(v1alpha1.PhasePending)]
		_, ok2 := got["/"+string(v1alpha1.PhaseRunning)]
		return !ok && !ok2, fmt.Sprint(got)
	})
	r.stop()
	r.check()

	mu.Lock()
	defer mu.Unlock()
	for _, m := range mismatches {
		t.Error(m)
	}
	for _, k := range []string{"gauge-a/Running", "gauge-a/Succeeded", "gauge-a/Pending"} {
		if !seen[k] {
			t.Errorf("gauge never showed %s above 0; saw %v", k, slices.Sorted(maps.Keys(seen)))
		}
	}
	if checked < 3 {
		t.Errorf("checked the gauge after %d passes; want at least 3", checked)
	}
	t.Logf("gauge matched the API server after %d passes; series seen above 0: %v", checked, slices.Sorted(maps.Keys(seen)))
}

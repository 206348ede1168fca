package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/testenv"
)

// TestWithAPIServer runs every test that needs the real kube-apiserver and
// etcd on one control plane; each works in its own namespace and node
// pool, one after the other.
func TestWithAPIServer(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *env)
	}{
		{"gang under contention", testGangContention},
		{"quota and fair share", testQuotaFairShare},
		{"preemption", testPreemption},
		{"unhealthy GPU avoided", testUnhealthyGPU},
		{"restart from checkpoint", testRestart},
		{"scheduler killed mid-flight", testFailover},
		{"jobs gauge", testJobsGauge},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, e) })
	}
}

// testGangContention submits more gangs than fit; gangs finish one by one
// and the rest move in. After every pass no job is partly bound and no
// GPU is given twice; in the end every job has run.
func testGangContention(t *testing.T, e *env) {
	p := e.pool(t, "gang")
	for i := range 4 {
		p.node(fmt.Sprintf("gang-node-%d", i), healthyGPUs(4))
	}
	k := p.kubelet(true)
	_ = k
	shapes := [][2]int32{{4, 2}, {3, 2}, {2, 4}, {4, 1}, {3, 3}, {2, 2}, {4, 2}, {1, 4}, {2, 3}, {3, 1}}
	for i, s := range shapes {
		p.job(fmt.Sprintf("gang-%d", i), s[0], s[1])
	}
	// A job bigger than the cluster is never placed, not even in part.
	p.job("gang-huge", 5, 4)

	// Watch all along, not only after passes: a gang is bound in one burst
	// of parallel bindings, so a job seen partly bound must be whole soon.
	var worstPartial atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		since := map[string]time.Time{}
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(10 * time.Millisecond):
			}
			jobs := p.jobInfos()
			n := map[string]int32{}
			for _, pod := range p.pods() {
				if bound(&pod) {
					n[pod.Labels[LabelJob]]++
				}
			}
			now := time.Now()
			for job, ji := range jobs {
				if n := n[job]; n != 0 && n != ji.workers && !ji.terminal {
					if since[job].IsZero() {
						since[job] = now
					}
					if d := now.Sub(since[job]); d > time.Duration(worstPartial.Load()) {
						worstPartial.Store(int64(d))
					}
				} else {
					delete(since, job)
				}
			}
		}
	}()

	r := p.start(Options{Policy: "babelfish"})
	done := map[string]bool{}
	eventually(t, 90*time.Second, "every job succeeds", func() (bool, string) {
		// Finish one running gang at a time, as training would.
		for name, ph := range p.phases() {
			if ph == v1alpha1.PhaseRunning && !done[name] {
				for _, pod := range p.jobPods(name) {
					if pod.Labels[LabelRank] == "0" && pod.DeletionTimestamp == nil {
						if err := setPhase(t.Context(), e.cs, &pod, corev1.PodSucceeded, 0); err != nil {
							t.Logf("finish %s: %v", name, err)
						}
					}
				}
				done[name] = true
				break
			}
		}
		ph := p.phases()
		n := 0
		for name, x := range ph {
			if x == v1alpha1.PhaseSucceeded && name != "gang-huge" {
				n++
			}
		}
		return n == len(shapes), fmt.Sprint(ph)
	})
	close(stopWatch)
	<-watchDone
	r.stop()
	r.check()

	huge := p.getJob("gang-huge")
	c := meta.FindStatusCondition(huge.Status.Conditions, v1alpha1.ConditionAdmitted)
	if huge.Status.Phase != v1alpha1.PhasePending || c == nil || c.Reason != "Unschedulable" {
		t.Errorf("gang-huge: phase %q, condition %+v: want Pending, Unschedulable", huge.Status.Phase, c)
	}
	if n := len(p.jobPods("gang-huge")); n != 0 {
		t.Errorf("gang-huge: %d pods exist, want none", n)
	}
	t.Logf("longest time a job was seen partly bound: %v", time.Duration(worstPartial.Load()))
	if d := time.Duration(worstPartial.Load()); d > 2*time.Second {
		t.Errorf("a job stayed partly bound for %v", d)
	}
	// Events tell the story of each job.
	ev := p.events("gang-0")
	for _, want := range []string{"Scheduled", "Running", "Succeeded"} {
		if !slices.Contains(ev, want) {
			t.Errorf("gang-0 events %v: no %s", ev, want)
		}
	}
}

// testQuotaFairShare: a queue without borrowing stops at its quota while
// GPUs stay idle; two queues sharing idle quota borrow it in proportion
// to their weights (1:3).
func testQuotaFairShare(t *testing.T, e *env) {
	p := e.pool(t, "quota")
	for i := range 3 {
		p.node(fmt.Sprintf("quota-node-%d", i), healthyGPUs(4))
	}
	p.queue("quota-capped", 2, 1, 0) // 2 GPUs, no borrowing
	p.queue("quota-idle", 4, 1, -1)  // 4 GPUs nobody uses: lent out
	p.queue("quota-x", 2, 1, -1)
	p.queue("quota-y", 2, 3, -1)
	for i := range 4 {
		p.job(fmt.Sprintf("capped-%d", i), 1, 1, inQueue("quota-capped"))
	}
	for i := range 6 {
		p.job(fmt.Sprintf("x-%d", i), 1, 1, inQueue("quota-x"))
		p.job(fmt.Sprintf("y-%d", i), 1, 1, inQueue("quota-y"))
	}
	p.kubelet(true)
	r := p.start(Options{})

	// x and y each get their 2 GPUs, then share the 4 idle ones 1:3: the
	// queue that borrows least for its weight goes first.
	want := map[string]int{"capped": 2, "x": 3, "y": 5}
	count := func() map[string]int {
		got := map[string]int{}
		for name, ph := range p.phases() {
			if ph == v1alpha1.PhaseAdmitted || ph == v1alpha1.PhaseRunning {
				got[strings.SplitN(name, "-", 2)[0]]++
			}
		}
		return got
	}
	eventually(t, 30*time.Second, "admissions settle", func() (bool, string) {
		got := count()
		j := p.getJob("x-0")
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got, j.Status)
	})
	// And stay so: nothing else is admitted over later passes.
	time.Sleep(time.Second)
	if got := count(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("admitted per queue %v, want %v", got, want)
	}
	r.stop()
	r.check()

	for _, tc := range []struct {
		queue                      string
		used, borrowed             int64
		admitted, pending          int32
		wantPendingReasonOfSomeJob string
	}{
		{"quota-capped", 2000, 0, 2, 2, "QueueQuota"},
		{"quota-x", 3000, 1000, 3, 3, "QueueQuota"},
		{"quota-y", 5000, 3000, 5, 1, "QueueQuota"},
		{"quota-idle", 0, 0, 0, 0, ""},
	} {
		var q v1alpha1.Queue
		if err := e.c.get(t.Context(), resQueues, "", tc.queue, &q); err != nil {
			t.Fatal(err)
		}
		st := q.Status
		if st.UsedGPUMilli != tc.used || st.BorrowedGPUMilli != tc.borrowed || st.AdmittedJobs != tc.admitted || st.PendingJobs != tc.pending {
			t.Errorf("queue %s status: used %d borrowed %d admitted %d pending %d; want %d %d %d %d",
				tc.queue, st.UsedGPUMilli, st.BorrowedGPUMilli, st.AdmittedJobs, st.PendingJobs, tc.used, tc.borrowed, tc.admitted, tc.pending)
		}
	}
	// The capped queue's jobs wait for quota although GPUs are idle (12
	// GPUs, 10 used).
	for i := range 4 {
		j := p.getJob(fmt.Sprintf("capped-%d", i))
		if j.Status.Phase != v1alpha1.PhasePending {
			continue
		}
		c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionAdmitted)
		if c == nil || c.Reason != "QueueQuota" || !strings.Contains(c.Message, "borrowing limit is 0") {
			t.Errorf("capped-%d: condition %+v: want QueueQuota naming the borrowing limit", i, c)
		}
	}
}

// testPreemption fills the cluster with low-priority gangs; a
// high-priority gang evicts the one that loses the least work since its
// last checkpoint, after a grace period, and the victim comes back later.
func testPreemption(t *testing.T, e *env) {
	p := e.pool(t, "preempt")
	p.node("preempt-node-0", healthyGPUs(4))
	p.node("preempt-node-1", healthyGPUs(4))
	k := p.kubelet(true)
	p.job("low-old", 4, 1, priority(1)) // checkpointed long ago
	p.job("low-fresh", 2, 1, priority(1))
	p.job("mid", 2, 1, priority(5))
	r := p.start(Options{GracePeriod: 7 * time.Second})
	eventually(t, 20*time.Second, "the low jobs run", func() (bool, string) {
		ph := p.phases()
		return ph["low-old"] == v1alpha1.PhaseRunning && ph["low-fresh"] == v1alpha1.PhaseRunning && ph["mid"] == v1alpha1.PhaseRunning, fmt.Sprint(ph)
	})
	now := time.Now()
	p.trainerStatus("low-old", 900, 100, now.Add(-30*time.Minute))
	p.trainerStatus("mid", 900, 800, now.Add(-20*time.Minute))
	p.trainerStatus("low-fresh", 500, 500, now)
	freshPods := p.jobPods("low-fresh")

	p.job("high", 2, 1, priority(10))
	eventually(t, 30*time.Second, "high runs", func() (bool, string) {
		ph := p.phases()
		return ph["high"] == v1alpha1.PhaseRunning, fmt.Sprint(ph)
	})
	// Give a cascade its chance: more passes while high runs.
	time.Sleep(time.Second)
	ph := p.phases()
	if ph["low-old"] != v1alpha1.PhaseRunning || ph["mid"] != v1alpha1.PhaseRunning {
		t.Errorf("phases %v: only low-fresh should have been preempted", ph)
	}
	for _, name := range []string{"low-old", "mid", "high"} {
		if n := p.getJob(name).Status.Evictions; n != 0 {
			t.Errorf("%s evicted %d times, want never", name, n)
		}
	}
	j := p.getJob("low-fresh")
	c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionPreempted)
	if j.Status.Phase != v1alpha1.PhasePreempted || j.Status.Evictions != 1 || c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "preempt/high") {
		t.Errorf("low-fresh: phase %q evictions %d condition %+v: want Preempted once, for preempt/high", j.Status.Phase, j.Status.Evictions, c)
	}
	for _, pod := range freshPods {
		if g, ok := k.grace(pod.Name); !ok || g != 7 {
			t.Errorf("victim pod %s deleted with grace %d (seen %v), want 7s", pod.Name, g, ok)
		}
	}
	if ev := p.events("low-fresh"); !slices.Contains(ev, "Preempted") {
		t.Errorf("low-fresh events %v: no Preempted", ev)
	}
	if ev := p.events("high"); !slices.Contains(ev, "Preempting") {
		t.Errorf("high events %v: no Preempting", ev)
	}

	// When high finishes, the victim is placed again: evicted, not starved.
	for _, pod := range p.jobPods("high") {
		if pod.Labels[LabelRank] == "0" {
			if err := setPhase(t.Context(), e.cs, &pod, corev1.PodSucceeded, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 30*time.Second, "low-fresh runs again", func() (bool, string) {
		ph := p.phases()
		return ph["low-fresh"] == v1alpha1.PhaseRunning, fmt.Sprint(ph)
	})
	j = p.getJob("low-fresh")
	if j.Status.GangGeneration != 2 {
		t.Errorf("low-fresh gang generation %d, want 2 (placed twice)", j.Status.GangGeneration)
	}
	pods := p.jobPods("low-fresh")
	if len(pods) != 2 || podEnv(&pods[0])[EnvResumeFrom] != "checkpoints/low-fresh/500/" {
		t.Errorf("low-fresh pods after readmission: %d, resume from %q; want 2 resuming from step 500", len(pods), podEnv(&pods[0])[EnvResumeFrom])
	}
	r.stop()
	r.check()
}

// testUnhealthyGPU: GPUs the agent marks unhealthy are never given out;
// once healthy again they are.
func testUnhealthyGPU(t *testing.T, e *env) {
	p := e.pool(t, "health")
	p.node("health-node-0", []gpuSpec{{healthy: true}, {healthy: false}, {healthy: false}, {healthy: true}})
	// A node whose agent never published: its nvidia.com/gpu capacity is
	// not trusted.
	if _, err := testenv.RegisterGPUNode(t.Context(), e.cs, "health-node-bare", 4, map[string]string{"babelfish.dev/test-pool": p.ns}); err != nil {
		t.Fatal(err)
	}
	p.kubelet(true)
	p.job("two", 2, 1)
	r := p.start(Options{})
	eventually(t, 20*time.Second, "two runs", func() (bool, string) {
		ph := p.phases()
		return ph["two"] == v1alpha1.PhaseRunning, fmt.Sprint(ph)
	})
	var got []string
	for _, pod := range p.jobPods("two") {
		got = append(got, pod.Spec.NodeName+":"+podEnv(&pod)[EnvVisibleDevices])
	}
	slices.Sort(got)
	if fmt.Sprint(got) != "[health-node-0:0 health-node-0:3]" {
		t.Errorf("two placed on %v, want GPUs 0 and 3 of health-node-0", got)
	}
	p.job("one", 1, 1)
	eventually(t, 10*time.Second, "one waits", func() (bool, string) {
		j := p.getJob("one")
		c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionAdmitted)
		return c != nil && c.Reason == "Unschedulable", fmt.Sprintf("%+v", c)
	})
	p.setInventory("health-node-0", []gpuSpec{{healthy: true}, {healthy: true}, {healthy: false}, {healthy: true}})
	eventually(t, 20*time.Second, "one runs on the recovered GPU", func() (bool, string) {
		pods := p.jobPods("one")
		if len(pods) != 1 || pods[0].Spec.NodeName == "" {
			return false, fmt.Sprint(len(pods))
		}
		return podEnv(&pods[0])[EnvVisibleDevices] == "1", podEnv(&pods[0])[EnvVisibleDevices]
	})

	// The last GPU recovers too; two half-GPU jobs share it.
	p.setInventory("health-node-0", healthyGPUs(4))
	p.job("share-a", 1, 1, gpuMilli(500))
	p.job("share-b", 1, 1, gpuMilli(500))
	eventually(t, 20*time.Second, "both sharing jobs run on GPU 2", func() (bool, string) {
		var got []string
		for _, name := range []string{"share-a", "share-b"} {
			for _, pod := range p.jobPods(name) {
				if pod.Spec.NodeName != "" {
					got = append(got, podEnv(&pod)[EnvVisibleDevices]+"@"+pod.Annotations[AnnotationGPUMilli])
				}
			}
		}
		return fmt.Sprint(got) == "[2@500 2@500]", fmt.Sprint(got)
	})
	for _, pod := range p.jobPods("share-a") {
		if _, ok := pod.Spec.Containers[0].Resources.Limits[GPUResource]; ok {
			t.Errorf("sharing pod %s requests %s: the device plugin would hand it a whole GPU", pod.Name, GPUResource)
		}
	}
	r.stop()
	r.check()
}

// testRestart fails a rank: the whole gang is torn down and placed again
// after a backoff, resuming from its checkpoint, until the backoff limit.
func testRestart(t *testing.T, e *env) {
	p := e.pool(t, "restart")
	p.node("restart-node-0", healthyGPUs(4))
	p.kubelet(true)
	p.job("flaky", 2, 1, backoffLimit(2), withEnv("BABELFISH_RANK", "99"), withEnv("USER_SETTING", "kept"))
	var restarts atomic.Int32
	r := p.start(Options{BackoffBase: time.Second, BackoffMax: 10 * time.Second,
		AfterPass: func(st PassStats) { restarts.Add(int32(st.Restarted)) }})
	running := func(gen int32) {
		eventually(t, 30*time.Second, fmt.Sprintf("gang %d runs", gen), func() (bool, string) {
			j := p.getJob("flaky")
			return j.Status.Phase == v1alpha1.PhaseRunning && j.Status.GangGeneration == gen, fmt.Sprintf("%s gen %d", j.Status.Phase, j.Status.GangGeneration)
		})
	}
	fail := func(rank string) time.Time {
		for _, pod := range p.jobPods("flaky") {
			if pod.Labels[LabelRank] == rank && pod.DeletionTimestamp == nil {
				if err := setPhase(t.Context(), e.cs, &pod, corev1.PodFailed, 137); err != nil {
					t.Fatal(err)
				}
				return time.Now()
			}
		}
		t.Fatalf("no live pod of rank %s", rank)
		return time.Time{}
	}

	running(1)
	pods := p.jobPods("flaky")
	env0 := podEnv(&pods[0])
	for k, want := range map[string]string{
		EnvRank: "0", EnvWorldSize: "2", EnvGeneration: "1", EnvJobID: "restart/flaky", EnvJob: "flaky",
		EnvRendezvous: "flaky-0.flaky.restart.svc:29500", "USER_SETTING": "kept", EnvDataset: "cldr-phrases",
	} {
		if env0[k] != want {
			t.Errorf("rank 0 env %s=%q, want %q", k, env0[k], want)
		}
	}
	if pods[0].Spec.Hostname != "flaky-0" || pods[0].Spec.Subdomain != "flaky" || pods[0].Spec.SchedulerName != "babelfish" {
		t.Errorf("rank 0 hostname %q subdomain %q scheduler %q", pods[0].Spec.Hostname, pods[0].Spec.Subdomain, pods[0].Spec.SchedulerName)
	}
	if svc, err := e.cs.CoreV1().Services("restart").Get(t.Context(), "flaky", metav1.GetOptions{}); err != nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("headless service: %v %+v", err, svc)
	}

	p.trainerStatus("flaky", 120, 100, time.Now())
	failedAt := fail("1")
	eventually(t, 10*time.Second, "restarting", func() (bool, string) {
		j := p.getJob("flaky")
		return j.Status.Phase == v1alpha1.PhaseRestarting && j.Status.Restarts == 1, string(j.Status.Phase)
	})
	j := p.getJob("flaky")
	c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionAdmitted)
	if c == nil || !strings.Contains(c.Message, "rank 1") || !strings.Contains(c.Message, "exited 137") || !strings.Contains(c.Message, "checkpoint step 100") {
		t.Errorf("restart condition %+v: want the failed rank, its exit code and the checkpoint", c)
	}
	running(2)
	if d := time.Since(failedAt); d < time.Second {
		t.Errorf("gang placed again %v after the failure: want the 1s backoff", d)
	}
	pods = p.jobPods("flaky")
	if len(pods) != 2 || podEnv(&pods[0])[EnvResumeFrom] != "checkpoints/flaky/100/" || podEnv(&pods[0])[EnvGeneration] != "2" {
		t.Errorf("second gang: %d pods, env %v", len(pods), podEnv(&pods[0]))
	}

	failedAt = fail("0")
	running(3)
	if d := time.Since(failedAt); d < 2*time.Second {
		t.Errorf("third gang %v after the second failure: want the 2s backoff", d)
	}
	fail("1")
	eventually(t, 10*time.Second, "failed for good", func() (bool, string) {
		j := p.getJob("flaky")
		return j.Status.Phase == v1alpha1.PhaseFailed, string(j.Status.Phase)
	})
	j = p.getJob("flaky")
	if c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionFailed); c == nil || c.Reason != "BackoffLimitExceeded" || j.Status.Restarts != 2 {
		t.Errorf("failed job: restarts %d condition %+v", j.Status.Restarts, c)
	}
	if n := restarts.Load(); n != 2 {
		t.Errorf("passes reported %d restarts, want 2", n)
	}
	eventually(t, 10*time.Second, "failed gang's pods gone", func() (bool, string) {
		n := len(p.jobPods("flaky"))
		return n == 0, fmt.Sprint(n)
	})
	r.stop()
	r.check()
}

// testFailover kills the scheduler in the middle of binding a gang and
// starts another: the second takes the lease, finishes what the first
// left, binds no pod twice and gives no GPU twice.
func testFailover(t *testing.T, e *env) {
	p := e.pool(t, "failover")
	for i := range 6 {
		p.node(fmt.Sprintf("failover-node-%d", i), healthyGPUs(4))
	}
	const jobs = 10
	for i := range jobs {
		p.job(fmt.Sprintf("job-%d", i), 2, 1, withCPU("2"))
	}
	lease := Options{LeaderElection: true, LeaseNamespace: "failover", LeaseName: "scheduler",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond}

	// The first scheduler dies on its 8th binding, once the 7th is done:
	// gangs before stay bound, the gang in flight is left half bound.
	var binds atomic.Int32
	killed := make(chan struct{})    // the hook asks for the kill
	cancelled := make(chan struct{}) // the test has killed it
	o1 := lease
	o1.Identity = "first"
	o1.Parallelism = 1
	o1.beforeBind = func(ctx context.Context, pod string) {
		if binds.Add(1) != 8 {
			return
		}
		half := strings.TrimSuffix(pod, "1") + "0" // rank 0 of the same gang
		for range 100 {
			got, err := e.cs.CoreV1().Pods("failover").Get(context.WithoutCancel(t.Context()), half, metav1.GetOptions{})
			if err == nil && got.Spec.NodeName != "" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(killed)
		<-cancelled
		<-ctx.Done() // the cancel has reached this pass
	}
	first := p.start(o1)
	<-killed
	first.cancel()
	close(cancelled)
	first.stop()
	left := p.pods()
	boundBefore := 0
	for i := range left {
		if left[i].Spec.NodeName != "" {
			boundBefore++
		}
	}
	t.Logf("the first scheduler left %d pods, %d bound", len(left), boundBefore)
	if len(left) != 8 || boundBefore != 7 {
		t.Fatalf("the first scheduler left %d pods, %d bound: want 3 gangs bound and one half bound", len(left), boundBefore)
	}

	// A leader that died after creating a gang's pods but before its
	// status write landed leaves pods no placement records: job-5's rank
	// 0, unbound, on a node the next leader may not choose.
	j5 := p.getJob("job-5")
	stray, err := WorkerPod(j5, 1, v1alpha1.WorkerPlacement{Rank: 0, Node: "failover-node-5", GPUs: []int32{3}, GPUMilli: 1000}, "babelfish", 5)
	if err != nil {
		t.Fatal(err)
	}
	if stray, err = e.cs.CoreV1().Pods("failover").Create(t.Context(), stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	o2 := lease
	o2.Identity = "second"
	second := p.start(o2)
	eventually(t, 30*time.Second, "every gang bound", func() (bool, string) {
		n := 0
		for _, pod := range p.pods() {
			if bound(&pod) {
				n++
			}
		}
		second.mu.Lock()
		passes := second.passes
		second.mu.Unlock()
		return n == jobs*2 && passes > 0, fmt.Sprintf("%d pods bound, %d passes", n, passes)
	})
	second.stop()
	first.check()
	second.check()

	// No pod was made twice and none re-made: every job was placed once,
	// and its pods are the ones the first scheduler started, where it had
	// started them.
	pods := p.pods()
	if len(pods) != jobs*2 {
		t.Errorf("%d pods, want %d", len(pods), jobs*2)
	}
	before := map[string]corev1.Pod{}
	for _, pod := range left {
		before[pod.Name] = pod
	}
	for _, pod := range pods {
		if pod.Spec.NodeName == "" {
			t.Errorf("pod %s unbound", pod.Name)
		}
		if pod.UID == stray.UID {
			t.Errorf("pod %s of no recorded placement was kept and bound", pod.Name)
		}
		if old, ok := before[pod.Name]; ok {
			if old.UID != pod.UID {
				t.Errorf("pod %s was re-created", pod.Name)
			}
			if old.Spec.NodeName != "" && old.Spec.NodeName != pod.Spec.NodeName {
				t.Errorf("pod %s moved from %s to %s", pod.Name, old.Spec.NodeName, pod.Spec.NodeName)
			}
		}
	}
	for i := range jobs {
		if j := p.getJob(fmt.Sprintf("job-%d", i)); j.Status.GangGeneration != 1 {
			t.Errorf("job-%d placed %d times, want once", i, j.Status.GangGeneration)
		}
	}
	if err := checkInvariants(pods, p.jobInfos()); err != nil {
		t.Error(err)
	}
	if ev := p.events("job-3"); !slices.Contains(ev, "Repaired") {
		t.Errorf("job-3 events %v: no Repaired (the half-bound gang was finished)", ev)
	}
	lease2, err := e.cs.CoordinationV1().Leases("failover").Get(context.WithoutCancel(t.Context()), "scheduler", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lease holder after both stopped: %q, transitions %d", ptrString(lease2.Spec.HolderIdentity), ptrInt32(lease2.Spec.LeaseTransitions))
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptrInt32(n *int32) int32 {
	if n == nil {
		return 0
	}
	return *n
}

package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

// passState is what one pass carries between its steps.
type passState struct {
	now   time.Time
	jobs  map[string]*jobState
	order []*jobState // in the order the API server listed them
	stats PassStats
	// read: the pass read the world, so order holds every job.
	read bool

	mu   sync.Mutex
	errs []error
}

func (ps *passState) fail(err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.errs = append(ps.errs, err)
}

// pass reads the world, moves every job along, asks the core for a plan
// and applies it. It returns what it did and when it wants to run again
// (zero: no deadline).
func (s *Scheduler) pass(ctx context.Context) (PassStats, time.Time) {
	began := time.Now()
	s.passes++
	ps := &passState{jobs: map[string]*jobState{}}
	ps.stats.Pass = s.passes
	wake := s.runPass(ctx, ps)
	ps.stats.Duration = time.Since(began)
	if len(ps.errs) > 0 {
		ps.stats.Err = errorsJoin(ps.errs)
	}
	s.metrics.passes.Inc()
	s.metrics.passSeconds.Observe(ps.stats.Duration.Seconds())
	s.metrics.pending.Set(float64(ps.stats.Pending))
	if ps.read {
		s.metrics.setJobs(ps.order)
	}
	s.log.Debug("scheduling pass", "pass", ps.stats.Pass, "took", ps.stats.Duration, "admitted", ps.stats.Admitted,
		"bound", ps.stats.PodsBound, "preempted", ps.stats.Preempted, "restarted", ps.stats.Restarted, "pending", ps.stats.Pending)
	return ps.stats, wake
}

func (s *Scheduler) runPass(ctx context.Context, ps *passState) time.Time {
	t0 := time.Now()
	w, err := readWorld(ctx, s.crd, s.cs, &s.opts)
	if err != nil {
		ps.fail(err)
		return time.Time{}
	}
	tRead := time.Since(t0)
	ps.now = w.now
	ps.read = true
	nodes := nodeInfos(w.nodes, w.foreign, s.log)
	nodeSet := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		nodeSet[n.Name] = true
	}

	// Each job with its pods; pods whose job is gone are orphans.
	podsOf := map[string][]*corev1.Pod{}
	for i := range w.pods {
		p := &w.pods[i]
		k := key(p.Namespace, p.Labels[LabelJob])
		podsOf[k] = append(podsOf[k], p)
	}
	evs := map[*jobState][]event{}
	for i := range w.jobs {
		js := newJobState(&w.jobs[i])
		ps.jobs[js.key] = js
		ps.order = append(ps.order, js)
		var mine []*corev1.Pod
		for _, p := range podsOf[js.key] {
			if ownedBy(p, js.job) {
				mine = append(mine, p)
			}
		}
		js.sortPods(mine)
		evs[js] = s.advance(js, ps.now, nodeSet)
	}
	s.parallel(ctx, len(ps.order), func(i int) {
		js := ps.order[i]
		for _, d := range js.delNow {
			s.deletePod(ctx, ps, d)
		}
	})
	var orphans []*corev1.Pod
	for k, pods := range podsOf {
		js := ps.jobs[k]
		for _, p := range pods {
			if js == nil || !ownedBy(p, js.job) {
				orphans = append(orphans, p)
			}
		}
	}

	snap, held := s.snapshot(ps, nodes, orphans, evs)
	for i := range w.queues {
		snap.Queues = append(snap.Queues, coreQueue(&w.queues[i]))
	}
	var plan *core.Plan
	t1 := time.Now()
	if len(snap.Pending) > 0 {
		plan, err = s.plan(snap, ps)
		if err != nil {
			ps.fail(err)
		}
	}
	tPlan := time.Since(t1)

	// Preemptions first: their pods start their grace period now. A job
	// whose earlier victims still hold their GPUs evicts no one else: it
	// waits for them (no cascade across passes either).
	waiting := map[string]bool{}
	for _, js := range ps.order {
		if by := js.next.PreemptedBy; by != nil && s.liveStale(js) {
			waiting[*by] = true
		}
	}
	if plan != nil {
		for _, p := range plan.Preemptions {
			victim, forJob := ps.jobs[p.Victim], ps.jobs[p.For]
			if victim == nil || waiting[p.For] {
				continue
			}
			e := s.preempt(victim, ps.now, p)
			victim.admitted = false
			if err := s.flush(ctx, victim); err != nil {
				ps.fail(err)
				continue
			}
			s.deleteAll(ctx, ps, victim)
			s.event(victim.job, jobOf(forJob), e)
			if forJob != nil {
				s.event(forJob.job, victim.job, event{reason: "Preempting", note: fmt.Sprintf("preempting %s to make room (%v of its work since its last checkpoint at stake)", p.Victim, p.LostWork.Round(time.Second))})
			}
			ps.stats.Preempted++
			s.metrics.preempted.Inc()
		}
	}

	// Gangs: new placements, and placements a dead leader left unfinished.
	type gang struct {
		js *jobState
		bs []core.Binding // nil: repair the recorded placement
	}
	var gangs []gang
	if plan != nil {
		byJob := map[string][]core.Binding{}
		var order []string
		for _, b := range plan.Bindings {
			if _, ok := byJob[b.Job]; !ok {
				order = append(order, b.Job)
			}
			byJob[b.Job] = append(byJob[b.Job], b)
		}
		for _, k := range order {
			if js := ps.jobs[k]; js != nil {
				gangs = append(gangs, gang{js, byJob[k]})
			}
		}
	}
	for _, js := range ps.order {
		if js.admitted && js.repair {
			gangs = append(gangs, gang{js, nil})
		}
	}
	t2 := time.Now()
	s.parallel(ctx, len(gangs), func(i int) {
		g := gangs[i]
		bound, err := s.submit(ctx, ps, g.js, g.bs)
		ps.mu.Lock()
		defer ps.mu.Unlock()
		ps.stats.PodsBound += bound
		if err == nil && g.bs != nil {
			ps.stats.Admitted++
		}
	})

	tGangs := time.Since(t2)
	if plan != nil {
		for _, p := range plan.Pending {
			js := ps.jobs[p.Job]
			if js == nil || js.admitted {
				continue
			}
			if js.markPending(ps.now, p.Reason) {
				s.event(js.job, nil, event{reason: "Pending", note: p.Reason})
			}
		}
	}

	// Write what changed, then delete what the new status no longer
	// holds: a scheduler that dies in between finds the pods unowned by
	// any placement and deletes them then.
	s.parallel(ctx, len(ps.order), func(i int) {
		js := ps.order[i]
		if err := s.flush(ctx, js); err != nil {
			ps.fail(err)
			return
		}
		for _, e := range evs[js] {
			s.event(js.job, nil, e)
		}
	})
	s.parallel(ctx, len(ps.order), func(i int) { s.deleteAll(ctx, ps, ps.order[i]) })
	s.parallel(ctx, len(orphans), func(i int) {
		if p := orphans[i]; p.DeletionTimestamp == nil && !podTerminal(p) {
			s.deletePod(ctx, ps, podDeletion{pod: p, grace: s.opts.PodGracePeriod, why: "its TrainingJob is gone"})
		}
	})

	var wake time.Time
	for _, js := range ps.order {
		if !js.admitted && !js.next.Phase.Terminal() {
			ps.stats.Pending++
		}
		if !js.wake.IsZero() && (wake.IsZero() || js.wake.Before(wake)) {
			wake = js.wake
		}
		if js.restarted {
			ps.stats.Restarted++
			s.metrics.restarted.Inc()
		}
	}
	s.queueStatus(ctx, ps, w.queues, held)
	s.log.Debug("pass steps", "pass", ps.stats.Pass, "read", tRead, "plan", tPlan, "gangs", len(gangs), "submit", tGangs,
		"jobs", len(w.jobs), "pods", len(w.pods), "nodes", len(w.nodes))
	return wake
}

func jobOf(js *jobState) *v1alpha1.TrainingJob {
	if js == nil {
		return nil
	}
	return js.job
}

// ownedBy reports whether a pod was made for this very job (not a deleted
// job of the same name).
func ownedBy(p *corev1.Pod, j *v1alpha1.TrainingJob) bool {
	for _, r := range p.OwnerReferences {
		if r.UID == j.UID {
			return true
		}
	}
	return false
}

// snapshot builds the core's input. Placed gangs hold what their pods
// hold (a bound pod's node and GPU annotation; the recorded placement for
// a pod not yet bound); pods on their way out hold theirs until they are
// gone. A placement that no longer fits (a node or GPU vanished) sends
// its gang to restart. It returns the GPU milli held per queue.
func (s *Scheduler) snapshot(ps *passState, nodes []core.NodeInfo, orphans []*corev1.Pod, evs map[*jobState][]event) (*core.Snapshot, map[string]int64) {
	snap := &core.Snapshot{Now: ps.now, Nodes: nodes}
	held := map[string]int64{}
	st, err := core.NewState(nodes)
	if err != nil {
		ps.fail(fmt.Errorf("nodes: %w", err))
		return snap, held
	}
	// apply adds bindings to the trial state, all or none.
	apply := func(bs []core.Binding) error {
		for i, b := range bs {
			if err := st.Apply(b); err != nil {
				for _, u := range bs[:i] {
					_ = st.Release(u)
				}
				return err
			}
		}
		return nil
	}
	for _, js := range ps.order {
		if !js.admitted {
			continue
		}
		var bs []core.Binding
		for _, pl := range js.next.Placement {
			if p := js.current[int(pl.Rank)]; p != nil && p.Spec.NodeName != "" {
				if got, err := podPlacement(p); err == nil {
					pl = got
				}
			}
			bs = append(bs, bindingOf(js.key, js.req, pl))
		}
		if err := apply(bs); err != nil {
			js.admitted, js.repair = false, false
			evs[js] = append(evs[js], s.restart(js, ps.now, fmt.Sprintf("placement no longer fits: %v", err))...)
			continue
		}
		rj := core.RunningJob{Job: coreJob(js.job), Bindings: bs, LastCheckpoint: checkpointTime(js.job)}
		if t := js.next.StartedAt; t != nil {
			rj.Started = t.Time
		} else if t := js.next.AdmittedAt; t != nil {
			rj.Started = t.Time
		}
		snap.Running = append(snap.Running, rj)
		held[js.job.Spec.Queue] += js.gpuMilli()
	}

	// Pods outside any placement still hold their node until they end.
	type leftover struct {
		queue string
		pods  []*corev1.Pod
	}
	left := map[string]*leftover{}
	var leftKeys []string
	add := func(k, queue string, p *corev1.Pod) {
		if p.Spec.NodeName == "" || podTerminal(p) {
			return
		}
		l := left[k]
		if l == nil {
			l = &leftover{queue: queue}
			left[k] = l
			leftKeys = append(leftKeys, k)
		}
		l.pods = append(l.pods, p)
	}
	for _, js := range ps.order {
		for _, p := range js.stale {
			add(fmt.Sprintf("%s@%d", js.key, podGeneration(p)), js.job.Spec.Queue, p)
		}
		if !js.admitted {
			for _, p := range js.current {
				add(fmt.Sprintf("%s@%d", js.key, podGeneration(p)), js.job.Spec.Queue, p)
			}
		}
	}
	for _, p := range orphans {
		add(fmt.Sprintf("%s/%s@orphan", p.Namespace, p.Labels[LabelJob]), "", p)
	}
	for _, k := range leftKeys {
		l := left[k]
		rj := core.RunningJob{Job: core.Job{Name: k, Queue: l.queue, Workers: 0}, Terminating: true}
		var milli int64
		for _, p := range l.pods {
			pl, err := podPlacement(p)
			if err != nil {
				s.log.Warn("pod placement unreadable: counted without GPUs", "pod", p.Namespace+"/"+p.Name, "err", err)
			}
			cpu, mem := podRequests(p)
			b := bindingOf(k, core.Request{CPUMilli: cpu, MemoryMiB: mem}, pl)
			b.Node = p.Spec.NodeName
			if err := apply([]core.Binding{b}); err != nil {
				s.log.Debug("leftover pod does not fit its node any more: ignored", "pod", p.Namespace+"/"+p.Name, "err", err)
				continue
			}
			rj.Bindings = append(rj.Bindings, b)
			for _, g := range b.GPUs {
				milli += g.Milli
			}
		}
		// The core charges a running job's queue Workers x its request:
		// one worker asking for exactly what the pods hold.
		if milli > 0 {
			rj.Workers = 1
			rj.Worker = core.Request{GPUs: 1, GPUMilli: milli}
		}
		snap.Running = append(snap.Running, rj)
		held[l.queue] += milli
	}

	for _, js := range ps.order {
		if js.pending {
			snap.Pending = append(snap.Pending, coreJob(js.job))
		}
	}
	return snap, held
}

func checkpointTime(j *v1alpha1.TrainingJob) time.Time {
	if c := j.Status.LatestCheckpoint; c != nil {
		return c.Time.Time
	}
	return time.Time{}
}

// plan runs the core with a scorer fitted to the jobs at hand.
func (s *Scheduler) plan(snap *core.Snapshot, ps *passState) (*core.Plan, error) {
	var reqs []core.Request
	for _, js := range ps.order {
		if js.next.Phase.Terminal() {
			continue
		}
		for range min(int(js.job.Spec.Workers), 64) {
			reqs = append(reqs, js.req)
		}
	}
	scorer, err := s.scorer(reqs, snap.Nodes)
	if err != nil {
		return nil, err
	}
	return core.Schedule(snap, core.Config{
		Scorer:       scorer,
		Preempt:      !s.opts.DisablePreemption,
		GracePeriod:  s.opts.GracePeriod,
		MaxEvictions: s.opts.MaxEvictions,
	})
}

// scorer builds the policy's scorer; the fragmentation-aware ones plan for
// the mix of jobs the cluster holds now, and fall back to best-fit with no
// GPU work to learn from.
func (s *Scheduler) scorer(reqs []core.Request, nodes []core.NodeInfo) (core.Scorer, error) {
	switch s.opts.Policy {
	case "fgd", "babelfish":
		w, err := core.EstimateWorkload(s.opts.Policy, reqs, nodes, 0)
		if err != nil {
			s.log.Debug("no workload to plan for: best-fit this pass", "err", err)
			return core.NewScorer("bestfit", nil)
		}
		return core.NewScorer(s.opts.Policy, w)
	}
	return core.NewScorer(s.opts.Policy, nil)
}

// flush writes the job's owned status if the pass changed it.
func (s *Scheduler) flush(ctx context.Context, js *jobState) error {
	if equalOwned(&js.orig, &js.next) {
		return nil
	}
	if err := patchStatus(ctx, s.crd, js.job, &js.next); err != nil {
		return err
	}
	js.orig = *js.next.deepCopy()
	return nil
}

// deleteAll deletes the pods the job queued for deletion.
func (s *Scheduler) deleteAll(ctx context.Context, ps *passState, js *jobState) {
	for _, d := range js.del {
		s.deletePod(ctx, ps, d)
	}
	js.del = nil
}

// deletePod deletes one pod with a grace period, only if it is the pod
// that was read (same UID).
func (s *Scheduler) deletePod(ctx context.Context, ps *passState, d podDeletion) {
	secs := int64(d.grace.Round(time.Second) / time.Second)
	uid := d.pod.UID
	err := s.cs.CoreV1().Pods(d.pod.Namespace).Delete(ctx, d.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &secs,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil:
		s.log.Debug("deleted pod", "pod", d.pod.Namespace+"/"+d.pod.Name, "grace", d.grace, "why", d.why)
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
	default:
		ps.fail(fmt.Errorf("delete pod %s/%s: %w", d.pod.Namespace, d.pod.Name, err))
	}
}

// parallel runs f(0..n-1) on up to Parallelism goroutines.
func (s *Scheduler) parallel(ctx context.Context, n int, f func(i int)) {
	if n == 0 {
		return
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(n, s.opts.Parallelism) {
		wg.Go(func() {
			for i := range work {
				f(i)
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
}

// queueStatus writes each Queue's use as this pass leaves it.
func (s *Scheduler) queueStatus(ctx context.Context, ps *passState, queues []v1alpha1.Queue, held map[string]int64) {
	type use struct {
		used              int64
		admitted, pending int32
	}
	uses := map[string]*use{}
	for _, js := range ps.order {
		q := js.job.Spec.Queue
		if q == "" || js.next.Phase.Terminal() {
			continue
		}
		u := uses[q]
		if u == nil {
			u = &use{}
			uses[q] = u
		}
		if len(js.next.Placement) > 0 {
			u.admitted++
		} else {
			u.pending++
		}
	}
	for i := range queues {
		q := &queues[i]
		u := uses[q.Name]
		if u == nil {
			u = &use{}
		}
		u.used = held[q.Name]
		for _, js := range ps.order {
			// Gangs placed this pass hold their GPUs from now on.
			if js.job.Spec.Queue == q.Name && js.placedNow {
				u.used += js.gpuMilli()
			}
		}
		nominal := q.Spec.NominalMilli()
		want := v1alpha1.QueueStatus{
			ObservedGeneration: q.Generation,
			NominalGPUMilli:    nominal,
			UsedGPUMilli:       u.used,
			BorrowedGPUMilli:   max(0, u.used-nominal),
			AdmittedJobs:       u.admitted,
			PendingJobs:        u.pending,
			Conditions:         slices.Clone(q.Status.Conditions),
		}
		setQueueActive(&want, q.Generation, ps.now)
		if queueStatusEqual(&q.Status, &want) {
			continue
		}
		body := queueStatusPatch(&want)
		if err := s.crd.patchStatus(ctx, resQueues, "", q.Name, body); err != nil {
			ps.fail(fmt.Errorf("queue %s: patch status: %w", q.Name, err))
		}
	}
}

package controller

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

// jobState is one TrainingJob during a pass: what was read, the status the
// pass wants, and what it decided.
type jobState struct {
	job  *v1alpha1.TrainingJob
	key  string
	req  core.Request
	orig ownedStatus // as read
	next ownedStatus // as the pass wants it

	current map[int]*corev1.Pod // pods of the current placement, by rank
	stale   []*corev1.Pod       // every other pod of the job

	admitted bool // holds a placement in this pass's snapshot
	pending  bool // asks the core for one
	repair   bool // placed, with pods missing or unbound
	// placedNow: the gang was placed in this pass (not in the snapshot).
	placedNow bool
	// restarted: the gang was torn down after a failure in this pass.
	restarted bool
	wake      time.Time

	del []podDeletion // pods to delete once the status is written
	// delNow are pods of no recorded placement: deleted before anything
	// else in the pass, so a gang placed in the same pass never meets one
	// of them under its own pod names.
	delNow []podDeletion
}

type podDeletion struct {
	pod   *corev1.Pod
	grace time.Duration
	why   string
}

// event is a Kubernetes Event to record about the job.
type event struct {
	warning      bool
	reason, note string
}

func newJobState(j *v1alpha1.TrainingJob) *jobState {
	js := &jobState{job: j, key: key(j.Namespace, j.Name), req: Request(j), orig: ownedOf(&j.Status), current: map[int]*corev1.Pod{}}
	js.next = *js.orig.deepCopy()
	js.next.ObservedGeneration = j.Generation
	return js
}

func (js *jobState) backoffLimit() int32 {
	if js.job.Spec.BackoffLimit != nil {
		return *js.job.Spec.BackoffLimit
	}
	return 3
}

// gpuMilli is what the gang holds in all.
func (js *jobState) gpuMilli() int64 { return int64(js.job.Spec.Workers) * js.req.TotalGPUMilli() }

// sortPods splits the job's pods into the current placement's and the rest.
func (js *jobState) sortPods(pods []*corev1.Pod) {
	for _, p := range pods {
		if len(js.next.Placement) > 0 && podGeneration(p) == js.next.GangGeneration && !js.next.Phase.Terminal() {
			if pl, err := podPlacement(p); err == nil {
				if _, dup := js.current[int(pl.Rank)]; !dup && int(pl.Rank) < int(js.job.Spec.Workers) {
					js.current[int(pl.Rank)] = p
					continue
				}
			}
		}
		js.stale = append(js.stale, p)
	}
}

// deletePod queues a pod's deletion unless it is gone already or going.
func (js *jobState) deletePod(p *corev1.Pod, grace time.Duration, why string) {
	if p.DeletionTimestamp != nil {
		return
	}
	js.del = append(js.del, podDeletion{pod: p, grace: grace, why: why})
}

// advance moves the job along its life from what its pods say, and
// decides whether it holds a placement or asks for one. It only changes
// js; the pass writes the status and deletes the pods afterwards.
func (s *Scheduler) advance(js *jobState, now time.Time, nodes map[string]bool) []event {
	o := &s.opts
	st := &js.next
	gen := js.job.Generation
	var evs []event
	for _, p := range js.stale {
		if !podTerminal(p) && p.DeletionTimestamp == nil {
			js.delNow = append(js.delNow, podDeletion{pod: p, grace: o.PodGracePeriod, why: "not part of the job's current placement"})
		}
	}
	if st.Phase.Terminal() {
		return nil
	}
	if st.Phase == "" {
		st.Phase = v1alpha1.PhasePending
	}
	if len(st.Placement) == 0 {
		switch {
		case s.liveStale(js):
			// The last placement's pods still hold their GPUs; the gang
			// is placed again once they are gone.
		case st.Phase == v1alpha1.PhaseRestarting && st.NextRestartAt != nil && now.Before(st.NextRestartAt.Time):
			js.wake = st.NextRestartAt.Time
		default:
			js.pending = true
		}
		return nil
	}

	// The gang is placed: see how its ranks are doing.
	var failure string
	missing, unbound, running := 0, 0, 0
	for _, pl := range st.Placement {
		p := js.current[int(pl.Rank)]
		switch {
		case p == nil:
			missing++
			if !nodes[pl.Node] {
				failure = fmt.Sprintf("rank %d: node %s is gone", pl.Rank, pl.Node)
			}
		case p.Status.Phase == corev1.PodSucceeded && pl.Rank == 0:
			return s.succeed(js, now)
		case p.Status.Phase == corev1.PodFailed:
			failure = fmt.Sprintf("rank %d (pod %s) failed: %s", pl.Rank, p.Name, podFailure(p))
		case p.DeletionTimestamp != nil:
			failure = fmt.Sprintf("rank %d (pod %s) was deleted", pl.Rank, p.Name)
		case p.Spec.NodeName != "" && !nodes[p.Spec.NodeName]:
			failure = fmt.Sprintf("rank %d (pod %s): node %s is gone", pl.Rank, p.Name, p.Spec.NodeName)
		case p.Spec.NodeName == "":
			unbound++
			if !nodes[pl.Node] {
				failure = fmt.Sprintf("rank %d: node %s is gone", pl.Rank, pl.Node)
			}
		case p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded:
			running++
		}
	}
	if failure == "" && missing > 0 && running > 0 {
		// Some ranks run while a pod is gone: a rank was lost, not a
		// gang left half-made by a scheduler that died.
		failure = fmt.Sprintf("%d of %d ranks' pods are gone while others run", missing, len(st.Placement))
	}
	if failure != "" {
		return s.restart(js, now, failure)
	}
	js.admitted = true
	js.repair = missing > 0 || unbound > 0
	if running == len(st.Placement) {
		if st.Phase != v1alpha1.PhaseRunning {
			evs = append(evs, event{reason: "Running", note: fmt.Sprintf("all %d ranks run", running)})
		}
		st.Phase = v1alpha1.PhaseRunning
		if st.StartedAt == nil {
			st.StartedAt = stamp(now)
		}
		st.setCondition(gen, now, v1alpha1.ConditionRunning, metav1.ConditionTrue, "AllRanksRunning", fmt.Sprintf("%d ranks run", running))
	} else if st.Phase != v1alpha1.PhaseRunning {
		st.Phase = v1alpha1.PhaseAdmitted
	}
	return evs
}

// liveStale reports whether any pod of an earlier placement still holds
// its node.
func (s *Scheduler) liveStale(js *jobState) bool {
	for _, p := range js.stale {
		if !podTerminal(p) {
			return true
		}
	}
	return false
}

// podFailure says why a pod failed, from its status.
func podFailure(p *corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if t := c.State.Terminated; t != nil {
			msg := fmt.Sprintf("container %s exited %d", c.Name, t.ExitCode)
			if t.Reason != "" {
				msg += " (" + t.Reason + ")"
			}
			if t.Message != "" {
				msg += ": " + t.Message
			}
			return msg
		}
	}
	if p.Status.Reason != "" || p.Status.Message != "" {
		return strings.TrimSpace(p.Status.Reason + " " + p.Status.Message)
	}
	return "phase Failed"
}

// restart tears the gang down after a rank failed: it waits out a backoff
// and is placed again from its last checkpoint, or fails for good past
// its backoff limit.
func (s *Scheduler) restart(js *jobState, now time.Time, why string) []event {
	st := &js.next
	gen := js.job.Generation
	// Every pod of the gang goes, failed ones too: the failure is kept in
	// the job's condition and Event, and a half-dead gang never holds GPUs.
	for _, p := range js.current {
		js.deletePod(p, s.opts.PodGracePeriod, "gang restart")
	}
	st.Placement, st.AdmittedAt, st.StartedAt = nil, nil, nil
	st.setCondition(gen, now, v1alpha1.ConditionRunning, metav1.ConditionFalse, "RankFailed", why)
	if st.Restarts >= js.backoffLimit() {
		st.Phase = v1alpha1.PhaseFailed
		st.CompletedAt = stamp(now)
		msg := fmt.Sprintf("%s; backoff limit %d reached after %d restarts", why, js.backoffLimit(), st.Restarts)
		st.setCondition(gen, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "Failed", msg)
		st.setCondition(gen, now, v1alpha1.ConditionFailed, metav1.ConditionTrue, "BackoffLimitExceeded", msg)
		return []event{{warning: true, reason: "BackoffLimitExceeded", note: msg}}
	}
	st.Restarts++
	js.restarted = true
	wait := s.opts.backoff(st.Restarts)
	st.Phase = v1alpha1.PhaseRestarting
	// Rounded up to the second the API server keeps, never shortening it.
	st.NextRestartAt = stamp(now.Add(wait + time.Second - time.Nanosecond))
	js.wake = st.NextRestartAt.Time
	from := "the start (no checkpoint yet)"
	if c := js.job.Status.LatestCheckpoint; c != nil {
		from = fmt.Sprintf("checkpoint step %d", c.Step)
	}
	msg := fmt.Sprintf("%s; restart %d of %d in %v from %s", why, st.Restarts, js.backoffLimit(), wait, from)
	st.setCondition(gen, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "Restarting", msg)
	return []event{{warning: true, reason: "RankFailed", note: msg}}
}

// succeed ends the job: rank 0 exited 0. Ranks still running are stopped.
func (s *Scheduler) succeed(js *jobState, now time.Time) []event {
	st := &js.next
	gen := js.job.Generation
	for _, p := range js.current {
		if !podTerminal(p) {
			js.deletePod(p, s.opts.PodGracePeriod, "job succeeded")
		}
	}
	st.Phase = v1alpha1.PhaseSucceeded
	st.CompletedAt = stamp(now)
	st.setCondition(gen, now, v1alpha1.ConditionRunning, metav1.ConditionFalse, "Completed", "rank 0 exited 0")
	st.setCondition(gen, now, v1alpha1.ConditionSucceeded, metav1.ConditionTrue, "Completed", "rank 0 exited 0")
	return []event{{reason: "Succeeded", note: "rank 0 exited 0"}}
}

// preempt records an eviction: the status first (so a scheduler that dies
// next does not mistake the dying pods for a failure), then the pods go
// with the grace period to checkpoint.
func (s *Scheduler) preempt(js *jobState, now time.Time, p core.Preemption) event {
	st := &js.next
	gen := js.job.Generation
	for _, pod := range js.current {
		if !podTerminal(pod) {
			js.deletePod(pod, p.GracePeriod, "preempted for "+p.For)
		}
	}
	st.Evictions++
	st.PreemptedBy = &p.For
	st.Placement, st.AdmittedAt, st.StartedAt = nil, nil, nil
	st.Phase = v1alpha1.PhasePreempted
	msg := fmt.Sprintf("preempted for %s: %v of work since the last checkpoint is lost unless the trainer checkpoints within the %v grace period (eviction %d)",
		p.For, p.LostWork.Round(time.Second), p.GracePeriod, st.Evictions)
	st.setCondition(gen, now, v1alpha1.ConditionPreempted, metav1.ConditionTrue, "Preempted", msg)
	st.setCondition(gen, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "Preempted", msg)
	st.setCondition(gen, now, v1alpha1.ConditionRunning, metav1.ConditionFalse, "Preempted", msg)
	return event{warning: true, reason: "Preempted", note: msg}
}

// markPending records why the core left the job waiting. It reports
// whether the reason changed, which is when an Event is worth sending.
func (js *jobState) markPending(now time.Time, why string) bool {
	st := &js.next
	if st.Phase == "" || st.Phase == v1alpha1.PhaseRestarting || st.Phase == v1alpha1.PhaseAdmitted || st.Phase == v1alpha1.PhaseRunning {
		st.Phase = v1alpha1.PhasePending
	}
	reason := pendingReason(why)
	old := st.condition(v1alpha1.ConditionAdmitted)
	changed := old == nil || old.Reason != reason
	st.setCondition(js.job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, why)
	return changed
}

// pendingReason is a condition reason for the core's free-text one.
func pendingReason(why string) string {
	switch {
	case strings.HasPrefix(why, "queue ") && strings.HasSuffix(why, "not found"):
		return "QueueNotFound"
	case strings.HasPrefix(why, "queue "):
		return "QueueQuota"
	case strings.HasPrefix(why, "waiting for"):
		return "WaitingForPreemption"
	case strings.HasPrefix(why, "job ") && strings.Contains(why, "must be"):
		return "InvalidSpec"
	}
	return "Unschedulable"
}

// admit records a placement: the commit point of a gang.
func (js *jobState) admit(now time.Time, bs []core.Binding) {
	st := &js.next
	gen := js.job.Generation
	st.GangGeneration++
	st.Placement = placementOf(js.job.Name, st.GangGeneration, bs)
	st.Phase = v1alpha1.PhaseAdmitted
	st.AdmittedAt, st.StartedAt, st.NextRestartAt, st.PreemptedBy = stamp(now), nil, nil, nil
	st.setCondition(gen, now, v1alpha1.ConditionAdmitted, metav1.ConditionTrue, "Placed", placementSummary(st.Placement))
	if c := st.condition(v1alpha1.ConditionPreempted); c != nil && c.Status == metav1.ConditionTrue {
		st.setCondition(gen, now, v1alpha1.ConditionPreempted, metav1.ConditionFalse, "Readmitted", "placed again after preemption")
	}
}

// unadmit undoes admit after the gang could not be created or bound.
func (js *jobState) unadmit(now time.Time, why string) {
	st := &js.next
	st.Placement, st.AdmittedAt = nil, nil
	st.Phase = v1alpha1.PhasePending
	st.setCondition(js.job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "BindFailed", why)
}

// placementSummary says where the gang went, e.g. "4 ranks on 2 nodes:
// node-1 (ranks 0-1, GPUs 0,1 / 2,3), ...", cut to a readable length.
func placementSummary(pl []v1alpha1.WorkerPlacement) string {
	nodes := []string{}
	seen := map[string]bool{}
	for _, p := range pl {
		if !seen[p.Node] {
			seen[p.Node] = true
			nodes = append(nodes, p.Node)
		}
	}
	return truncate(fmt.Sprintf("%d ranks on %d node(s): %s", len(pl), len(nodes), strings.Join(nodes, ", ")), 512)
}

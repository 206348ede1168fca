package kube

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// phaseCondition is the condition whose message explains a phase.
var phaseCondition = map[v1alpha1.TrainingJobPhase]string{
	v1alpha1.PhasePending:    v1alpha1.ConditionAdmitted,
	v1alpha1.PhaseAdmitted:   v1alpha1.ConditionAdmitted,
	v1alpha1.PhaseRunning:    v1alpha1.ConditionRunning,
	v1alpha1.PhaseRestarting: v1alpha1.ConditionAdmitted,
	v1alpha1.PhasePreempted:  v1alpha1.ConditionPreempted,
	v1alpha1.PhaseSucceeded:  v1alpha1.ConditionSucceeded,
	v1alpha1.PhaseFailed:     v1alpha1.ConditionFailed,
}

// Jobs returns the TrainingJobs: active ones first, by priority then age,
// then the most recently finished, at most WithMaxFinished of them.
func (s *Source) Jobs(ctx context.Context) ([]dashboard.Job, error) {
	var l v1alpha1.TrainingJobList
	if err := s.crd.Get().NamespaceIfScoped(s.cfg.jobNamespace, s.cfg.jobNamespace != "").Resource("trainingjobs").Do(ctx).Into(&l); err != nil {
		return nil, fmt.Errorf("list trainingjobs: %w", err)
	}
	var active, done []*v1alpha1.TrainingJob
	for i := range l.Items {
		j := &l.Items[i]
		if j.Status.Phase.Terminal() {
			done = append(done, j)
		} else {
			active = append(active, j)
		}
	}
	slices.SortFunc(active, func(a, b *v1alpha1.TrainingJob) int {
		return cmp.Or(cmp.Compare(b.Spec.Priority, a.Spec.Priority),
			a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time),
			strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name))
	})
	finished := func(j *v1alpha1.TrainingJob) time.Time {
		if j.Status.CompletedAt != nil {
			return j.Status.CompletedAt.Time
		}
		return j.CreationTimestamp.Time
	}
	slices.SortFunc(done, func(a, b *v1alpha1.TrainingJob) int {
		return cmp.Or(finished(b).Compare(finished(a)), strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name))
	})
	if len(done) > s.cfg.maxFinished {
		done = done[:s.cfg.maxFinished]
	}
	out := make([]dashboard.Job, 0, len(active)+len(done))
	for _, j := range append(active, done...) {
		out = append(out, jobOf(j))
	}
	return out, nil
}

func jobOf(j *v1alpha1.TrainingJob) dashboard.Job {
	st := &j.Status
	phase := st.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending // the scheduler has not seen it yet
	}
	dj := dashboard.Job{
		Namespace: j.Namespace, Name: j.Name, Queue: j.Spec.Queue, Phase: string(phase),
		Priority: j.Spec.Priority, Workers: int(j.Spec.Workers), GPUsPerWorker: int(j.Spec.GPUsPerWorker),
		Step: st.Step, Steps: j.Spec.Model.Steps, Loss: st.Loss, Created: j.CreationTimestamp.Time,
	}
	for _, p := range st.Placement {
		if p.Node != "" && !slices.Contains(dj.Nodes, p.Node) {
			dj.Nodes = append(dj.Nodes, p.Node)
		}
	}
	slices.Sort(dj.Nodes)
	if c := findCondition(st, phaseCondition[phase]); c != "" {
		dj.Message = c
	}
	return dj
}

// findCondition is the message of condition typ, else of the most
// recently changed condition.
func findCondition(st *v1alpha1.TrainingJobStatus, typ string) string {
	latest, msg := time.Time{}, ""
	for _, c := range st.Conditions {
		if c.Type == typ && c.Message != "" {
			return c.Message
		}
		if c.Message != "" && !c.LastTransitionTime.Time.Before(latest) {
			latest, msg = c.LastTransitionTime.Time, c.Message
		}
	}
	return msg
}

package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// ownedStatus is the part of a TrainingJob's status the scheduler writes.
// Its fields have no omitempty: a merge patch of it sets every one, and a
// nil one is written as null, which removes it. Step, loss, eval metrics
// and the latest checkpoint belong to the trainer and are never sent.
type ownedStatus struct {
	ObservedGeneration int64                      `json:"observedGeneration"`
	Phase              v1alpha1.TrainingJobPhase  `json:"phase"`
	GangGeneration     int32                      `json:"gangGeneration"`
	Placement          []v1alpha1.WorkerPlacement `json:"placement"`
	Restarts           int32                      `json:"restarts"`
	Evictions          int32                      `json:"evictions"`
	PreemptedBy        *string                    `json:"preemptedBy"`
	AdmittedAt         *metav1.Time               `json:"admittedAt"`
	StartedAt          *metav1.Time               `json:"startedAt"`
	NextRestartAt      *metav1.Time               `json:"nextRestartAt"`
	CompletedAt        *metav1.Time               `json:"completedAt"`
	Conditions         []metav1.Condition         `json:"conditions"`
}

func ownedOf(s *v1alpha1.TrainingJobStatus) ownedStatus {
	o := ownedStatus{
		ObservedGeneration: s.ObservedGeneration,
		Phase:              s.Phase,
		GangGeneration:     s.GangGeneration,
		Placement:          s.Placement,
		Restarts:           s.Restarts,
		Evictions:          s.Evictions,
		AdmittedAt:         s.AdmittedAt,
		StartedAt:          s.StartedAt,
		NextRestartAt:      s.NextRestartAt,
		CompletedAt:        s.CompletedAt,
		Conditions:         s.Conditions,
	}
	if s.PreemptedBy != "" {
		by := s.PreemptedBy
		o.PreemptedBy = &by
	}
	// Empty and nil lists mean the same on the wire.
	if len(o.Placement) == 0 {
		o.Placement = nil
	}
	if len(o.Conditions) == 0 {
		o.Conditions = nil
	}
	return *o.deepCopy()
}

func (o *ownedStatus) deepCopy() *ownedStatus {
	s := v1alpha1.TrainingJobStatus{
		Placement: o.Placement, AdmittedAt: o.AdmittedAt, StartedAt: o.StartedAt,
		NextRestartAt: o.NextRestartAt, CompletedAt: o.CompletedAt, Conditions: o.Conditions,
	}
	c := s.DeepCopy()
	out := *o
	if o.PreemptedBy != nil {
		by := *o.PreemptedBy
		out.PreemptedBy = &by
	}
	out.Placement, out.AdmittedAt, out.StartedAt = c.Placement, c.AdmittedAt, c.StartedAt
	out.NextRestartAt, out.CompletedAt, out.Conditions = c.NextRestartAt, c.CompletedAt, c.Conditions
	return &out
}

// stamp is a time as the API server stores it (whole seconds), so that a
// status read back compares equal to the one written.
func stamp(t time.Time) *metav1.Time {
	m := metav1.NewTime(t.Truncate(time.Second))
	return &m
}

// setCondition sets a condition, keeping its transition time when the
// status does not change.
func (o *ownedStatus) setCondition(gen int64, now time.Time, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&o.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg, 1024),
		ObservedGeneration: gen, LastTransitionTime: *stamp(now),
	})
}

func (o *ownedStatus) condition(typ string) *metav1.Condition {
	return meta.FindStatusCondition(o.Conditions, typ)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// patchStatus writes the owned status with a merge patch of the status
// subresource. Without a resourceVersion it cannot conflict with the
// trainer's writes of its own fields; leader election keeps out other
// schedulers.
func patchStatus(ctx context.Context, c *crdClient, j *v1alpha1.TrainingJob, o *ownedStatus) error {
	body, err := json.Marshal(map[string]any{"status": o})
	if err != nil {
		return fmt.Errorf("trainingjob %s/%s: encode status: %w", j.Namespace, j.Name, err)
	}
	if err := c.patchStatus(ctx, resTrainingJobs, j.Namespace, j.Name, body); err != nil {
		return fmt.Errorf("trainingjob %s/%s: patch status: %w", j.Namespace, j.Name, err)
	}
	return nil
}

func equalOwned(a, b *ownedStatus) bool { return apiequality.Semantic.DeepEqual(a, b) }

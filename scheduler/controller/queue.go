package controller

import (
	"encoding/json"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
)

func setQueueActive(st *v1alpha1.QueueStatus, gen int64, now time.Time) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1alpha1.QueueConditionActive, Status: metav1.ConditionTrue, Reason: "Scheduling",
		Message: "the scheduler admits jobs through this queue", ObservedGeneration: gen, LastTransitionTime: *stamp(now),
	})
}

func queueStatusEqual(a, b *v1alpha1.QueueStatus) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}

// queueStatusPatch is a merge patch that sets every field of the status,
// zeros included.
func queueStatusPatch(st *v1alpha1.QueueStatus) []byte {
	body, _ := json.Marshal(map[string]any{"status": map[string]any{
		"observedGeneration": st.ObservedGeneration,
		"nominalGPUMilli":    st.NominalGPUMilli,
		"usedGPUMilli":       st.UsedGPUMilli,
		"borrowedGPUMilli":   st.BorrowedGPUMilli,
		"admittedJobs":       st.AdmittedJobs,
		"pendingJobs":        st.PendingJobs,
		"conditions":         st.Conditions,
	}})
	return body
}

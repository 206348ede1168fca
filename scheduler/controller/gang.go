package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

// submit carries out one gang: with bindings, a new placement; without,
// the recorded placement of a gang a previous leader left unfinished.
// The placement is written to the job's status while the Service and every
// pod are created; only once all of that has landed are the pods bound,
// so no pod is ever bound for a placement the status does not record (an
// unbound pod of an unrecorded placement is just deleted by the next
// pass). When any step fails, the gang's pods are deleted and the job
// waits for the next pass. It returns the pods bound.
func (s *Scheduler) submit(ctx context.Context, ps *passState, js *jobState, bs []core.Binding) (int, error) {
	j := js.job
	var commit func() error
	if bs != nil {
		js.admit(ps.now, bs)
		commit = func() error { return s.flush(ctx, js) }
	}
	placement := js.next.Placement
	gen := js.next.GangGeneration

	bound, err := s.createAndBind(ctx, js, gen, placement, commit)
	if err != nil {
		if ctx.Err() != nil {
			// The scheduler is stopping: the next leader repairs the gang
			// or deletes its unbound pods.
			return bound, err
		}
		why := fmt.Sprintf("gang of %d could not be created and bound, deleted to retry: %v", len(placement), err)
		s.log.Warn("gang failed", "job", js.key, "err", err)
		s.rollback(ctx, ps, js, gen, placement)
		js.unadmit(ps.now, why)
		js.admitted, js.placedNow, js.repair = false, false, false
		if ferr := s.flush(ctx, js); ferr != nil {
			ps.fail(ferr)
		}
		s.event(j, nil, event{warning: true, reason: "BindFailed", note: why})
		s.metrics.bindFailed.Inc()
		return 0, err
	}
	js.admitted, js.placedNow = true, bs != nil
	s.metrics.podsBound.Add(float64(bound))
	if bs != nil {
		s.metrics.admitted.Inc()
		s.event(j, nil, event{reason: "Scheduled", note: placementSummary(placement)})
	} else if bound > 0 {
		s.event(j, nil, event{reason: "Repaired", note: fmt.Sprintf("finished a placement left unfinished: %d pods bound", bound)})
	}
	return bound, nil
}

// createAndBind runs commit (when not nil), makes the headless Service and
// every pod of the placement, all at once, then binds the pods.
func (s *Scheduler) createAndBind(ctx context.Context, js *jobState, gen int32, placement []v1alpha1.WorkerPlacement, commit func() error) (int, error) {
	j := js.job
	grace := int64(s.opts.GracePeriod.Round(time.Second) / time.Second)
	pods := make([]*corev1.Pod, len(placement))
	wants := make([]*corev1.Pod, len(placement))
	for i, pl := range placement {
		if p := js.current[int(pl.Rank)]; p != nil && podGeneration(p) == gen {
			pods[i] = p
			continue
		}
		want, err := WorkerPod(j, gen, pl, s.opts.SchedulerName, grace)
		if err != nil {
			return 0, err
		}
		wants[i] = want
	}
	errs := make([]error, len(placement)+2)
	var wg sync.WaitGroup
	if commit != nil {
		wg.Go(func() { errs[len(placement)+1] = commit() })
	}
	wg.Go(func() { errs[len(placement)] = s.ensureService(ctx, j) })
	for i, want := range wants {
		if want != nil {
			wg.Go(func() { pods[i], errs[i] = s.createPod(ctx, want, placement[i]) })
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}

	// All pods exist: bind them together, so the gang is bound within one
	// round trip of the API server.
	var (
		mu    sync.Mutex
		bound int
	)
	errs = nil
	for i, p := range pods {
		if p.Spec.NodeName != "" {
			if p.Spec.NodeName != placement[i].Node {
				mu.Lock()
				errs = append(errs, fmt.Errorf("pod %s is bound to %s, not %s", p.Name, p.Spec.NodeName, placement[i].Node))
				mu.Unlock()
			}
			continue
		}
		if s.opts.beforeBind != nil {
			s.opts.beforeBind(ctx, p.Name)
		}
		wg.Go(func() {
			err := s.bind(ctx, p, placement[i].Node)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			bound++
		})
	}
	wg.Wait()
	return bound, errors.Join(errs...)
}

// createPod creates one pod of a gang. A pod of that name that exists
// already (made by an earlier pass or leader) is the same pod only if it
// is meant for the same place and not on its way out.
func (s *Scheduler) createPod(ctx context.Context, want *corev1.Pod, pl v1alpha1.WorkerPlacement) (*corev1.Pod, error) {
	got, err := s.cs.CoreV1().Pods(want.Namespace).Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = s.cs.CoreV1().Pods(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case err != nil:
		case !samePlace(got, pl):
			err = fmt.Errorf("pod %s exists for another placement (node %q, GPUs %q)", got.Name, got.Annotations[AnnotationNode], got.Annotations[AnnotationGPUs])
		case got.DeletionTimestamp != nil:
			err = fmt.Errorf("pod %s is being deleted", got.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create pod %s: %w", want.Name, err)
	}
	return got, nil
}

// bind binds one pod through the Binding subresource. The pod's UID rides
// along, so a decision about an earlier pod of the same name cannot bind
// a newer one; a pod already bound to the same node counts as bound.
func (s *Scheduler) bind(ctx context.Context, p *corev1.Pod, node string) error {
	uid := p.UID
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: uid},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	err := s.cs.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if apierrors.IsConflict(err) {
		cur, gerr := s.cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if gerr == nil && cur.UID == uid && cur.Spec.NodeName == node {
			return nil
		}
	}
	return fmt.Errorf("bind pod %s to %s: %w", p.Name, node, err)
}

// samePlace reports whether an existing pod is meant for the placement.
func samePlace(p *corev1.Pod, pl v1alpha1.WorkerPlacement) bool {
	got, err := podPlacement(p)
	if err != nil || got.Node != pl.Node || got.GPUMilli != pl.GPUMilli || len(got.GPUs) != len(pl.GPUs) {
		return false
	}
	for i := range got.GPUs {
		if got.GPUs[i] != pl.GPUs[i] {
			return false
		}
	}
	return true
}

// rollback deletes every pod of a gang that could not be completed, by
// name: a pod made by this pass or an earlier one alike.
func (s *Scheduler) rollback(ctx context.Context, ps *passState, js *jobState, gen int32, placement []v1alpha1.WorkerPlacement) {
	secs := int64(s.opts.PodGracePeriod.Round(time.Second) / time.Second)
	for _, pl := range placement {
		name := PodName(js.job.Name, gen, int(pl.Rank))
		err := s.cs.CoreV1().Pods(js.job.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &secs})
		if err != nil && !apierrors.IsNotFound(err) {
			ps.fail(fmt.Errorf("roll back pod %s/%s: %w", js.job.Namespace, name, err))
		}
	}
}

// ensureService creates the job's headless Service unless it exists.
func (s *Scheduler) ensureService(ctx context.Context, j *v1alpha1.TrainingJob) error {
	_, err := s.cs.CoreV1().Services(j.Namespace).Create(ctx, headlessService(j), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service %s/%s: %w", j.Namespace, j.Name, err)
	}
	return nil
}

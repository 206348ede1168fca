package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/controller"
)

var trainingJobsGVR = schema.GroupVersionResource{Group: v1alpha1.Group, Version: v1alpha1.Version, Resource: "trainingjobs"}

// kubeJobs keeps jobs as TrainingJob objects in a cluster; the scheduler
// there runs them. Logs come from the worker pods.
type kubeJobs struct {
	dyn  dynamic.NamespaceableResourceInterface
	cs   kubernetes.Interface
	ns   string
	host string
}

func newKubeJobs(kubeconfig, namespace string) (*kubeJobs, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	if namespace == "" {
		if namespace, _, err = cc.Namespace(); err != nil || namespace == "" {
			namespace = "default"
		}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return &kubeJobs{dyn: dyn.Resource(trainingJobsGVR), cs: cs, ns: namespace, host: cfg.Host}, nil
}

func (k *kubeJobs) Where() string { return fmt.Sprintf("cluster %s namespace %s", k.host, k.ns) }

func (k *kubeJobs) wrap(err error, what string) error {
	if apierrors.IsNotFound(err) && what != "" {
		return fmt.Errorf("trainingjob %s not found in namespace %s", what, k.ns)
	}
	return err
}

func fromUnstructured(u *unstructured.Unstructured) (*v1alpha1.TrainingJob, error) {
	var j v1alpha1.TrainingJob
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &j); err != nil {
		return nil, fmt.Errorf("trainingjob %s: %w", u.GetName(), err)
	}
	return &j, nil
}

func (k *kubeJobs) Submit(ctx context.Context, j *v1alpha1.TrainingJob) (*v1alpha1.TrainingJob, error) {
	j = j.DeepCopy()
	if j.Namespace != "" && j.Namespace != k.ns {
		return nil, fmt.Errorf("metadata.namespace %q: differs from the target namespace %q (set -n)", j.Namespace, k.ns)
	}
	j.Namespace = k.ns
	j.Status = v1alpha1.TrainingJobStatus{}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(j)
	if err != nil {
		return nil, err
	}
	delete(obj, "status")
	u, err := k.dyn.Namespace(k.ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructured(u)
}

func (k *kubeJobs) List(ctx context.Context) ([]v1alpha1.TrainingJob, error) {
	l, err := k.dyn.Namespace(k.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]v1alpha1.TrainingJob, 0, len(l.Items))
	for i := range l.Items {
		j, err := fromUnstructured(&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b v1alpha1.TrainingJob) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return out, nil
}

func (k *kubeJobs) Get(ctx context.Context, name string) (*v1alpha1.TrainingJob, error) {
	u, err := k.dyn.Namespace(k.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, k.wrap(err, name)
	}
	return fromUnstructured(u)
}

// Cancel deletes the TrainingJob; its pods and Service go with it (they
// are owned), each pod with its grace period to checkpoint.
func (k *kubeJobs) Cancel(ctx context.Context, name string) (*v1alpha1.TrainingJob, error) {
	j, err := k.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	bg := metav1.DeletePropagationBackground
	if err := k.dyn.Namespace(k.ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		return nil, k.wrap(err, name)
	}
	return j, nil
}

// Logs streams the rank's pod of the newest placement.
func (k *kubeJobs) Logs(ctx context.Context, name string, rank int, follow bool, w io.Writer) error {
	j, err := k.Get(ctx, name)
	if err != nil {
		return err
	}
	if rank >= int(j.Spec.Workers) {
		return fmt.Errorf("--rank %d: job %s has ranks 0..%d", rank, name, j.Spec.Workers-1)
	}
	sel := fmt.Sprintf("%s=%s,%s=%d", controller.LabelJob, name, controller.LabelRank, rank)
	pods, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return err
	}
	var newest *corev1.Pod
	bestGen := int64(-1)
	for i := range pods.Items {
		p := &pods.Items[i]
		g, err := strconv.ParseInt(p.Labels[controller.LabelGeneration], 10, 32)
		if err == nil && g > bestGen {
			newest, bestGen = p, g
		}
	}
	if newest == nil {
		return fmt.Errorf("job %s rank %d: no worker pod in namespace %s (phase %s: %s)", name, rank, k.ns, j.Status.Phase, jobMessage(j))
	}
	rc, err := k.cs.CoreV1().Pods(k.ns).GetLogs(newest.Name, &corev1.PodLogOptions{Follow: follow}).Stream(ctx)
	if err != nil {
		return fmt.Errorf("logs of pod %s/%s: %w", k.ns, newest.Name, err)
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

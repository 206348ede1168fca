package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

// Labels and annotations the scheduler puts on worker pods.
const (
	// LabelJob names the TrainingJob a pod belongs to; the scheduler reads
	// only pods that carry it.
	LabelJob = "babelfish.dev/job"
	// LabelGeneration is the job's gang generation when the pod was made.
	LabelGeneration = "babelfish.dev/generation"
	// LabelRank is the worker's rank.
	LabelRank = "babelfish.dev/rank"
	// LabelManagedBy marks what the scheduler made.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "babelfish-scheduler"

	// AnnotationNode is the node the pod is meant for; spec.nodeName, once
	// bound, is the truth.
	AnnotationNode = "babelfish.dev/node"
	// AnnotationGPUs lists the GPU indices (NVML's) the pod holds, "0,1".
	AnnotationGPUs = "babelfish.dev/gpus"
	// AnnotationGPUMilli is the share of each GPU it holds (1000: whole).
	AnnotationGPUMilli = "babelfish.dev/gpu-milli"
)

// Environment variables of a worker, as trainer/collective reads them,
// plus the job's own settings.
const (
	EnvRank               = "BABELFISH_RANK"
	EnvWorldSize          = "BABELFISH_WORLD_SIZE"
	EnvRendezvous         = "BABELFISH_RENDEZVOUS"
	EnvListen             = "BABELFISH_LISTEN"
	EnvRingListen         = "BABELFISH_RING_LISTEN"
	EnvJob                = "BABELFISH_JOB"
	EnvJobID              = "BABELFISH_JOB_ID"
	EnvGeneration         = "BABELFISH_GENERATION"
	EnvGPUIndices         = "BABELFISH_GPU_INDICES"
	EnvGPUMilli           = "BABELFISH_GPU_MILLI"
	EnvDataset            = "BABELFISH_DATASET"
	EnvDatasetVersion     = "BABELFISH_DATASET_VERSION"
	EnvModelConfig        = "BABELFISH_MODEL_CONFIG"
	EnvCheckpointInterval = "BABELFISH_CHECKPOINT_INTERVAL"
	EnvResumeFrom         = "BABELFISH_RESUME_FROM"
	EnvNamespace          = "POD_NAMESPACE"
	EnvPodName            = "POD_NAME"
	EnvNodeName           = "NODE_NAME"
	EnvVisibleDevices     = "NVIDIA_VISIBLE_DEVICES"
)

// GPUResource is the extended resource whole-GPU workers request, so the
// kubelet and other schedulers account for the GPUs they hold.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

const containerName = "trainer"

// PodName is the deterministic name of one rank's pod in one placement of
// a job: a pod re-created for the same placement collides with the first.
func PodName(job string, gen int32, rank int) string {
	return fmt.Sprintf("%s-%d-%d", job, gen, rank)
}

// hostname is the rank's DNS name under the job's headless Service.
func hostname(job string, rank int) string { return fmt.Sprintf("%s-%d", job, rank) }

// Request is what one worker of j asks of the scheduling core, here and
// under the local executor.
func Request(j *v1alpha1.TrainingJob) core.Request {
	r := core.Request{GPUs: int(j.Spec.GPUsPerWorker), Models: slices.Clone(j.Spec.GPUModels)}
	if q := j.Spec.Template.Resources.CPU; q != nil {
		r.CPUMilli = q.MilliValue()
	}
	if q := j.Spec.Template.Resources.Memory; q != nil {
		r.MemoryMiB = (q.Value() + 1<<20 - 1) >> 20
	}
	if r.GPUs > 0 {
		r.GPUMilli = core.MilliPerGPU
		if j.Spec.GPUMilli != nil {
			r.GPUMilli = int64(*j.Spec.GPUMilli)
		}
	}
	return r
}

// coreJob is the job as the core sees it.
func coreJob(j *v1alpha1.TrainingJob) core.Job {
	return core.Job{
		Name:      key(j.Namespace, j.Name),
		Queue:     j.Spec.Queue,
		Priority:  j.Spec.Priority,
		Workers:   int(j.Spec.Workers),
		Worker:    Request(j),
		Created:   j.CreationTimestamp.Time,
		Evictions: int(j.Status.Evictions),
	}
}

func key(namespace, name string) string { return namespace + "/" + name }

// formatGPUs writes GPU indices as "0,1".
func formatGPUs(idx []int32) string {
	parts := make([]string, len(idx))
	for i, x := range idx {
		parts[i] = strconv.Itoa(int(x))
	}
	return strings.Join(parts, ",")
}

// parseGPUs reads formatGPUs' output.
func parseGPUs(s string) ([]int32, error) {
	if s == "" {
		return nil, nil
	}
	var out []int32
	for p := range strings.SplitSeq(s, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || x < 0 || x >= core.MaxGPUsPerNode {
			return nil, fmt.Errorf("annotation %s %q: want comma-separated GPU indices in 0..%d", AnnotationGPUs, s, core.MaxGPUsPerNode-1)
		}
		out = append(out, int32(x))
	}
	return out, nil
}

// placementOf turns the core's bindings of one job into its placement.
func placementOf(job string, gen int32, bs []core.Binding) []v1alpha1.WorkerPlacement {
	out := make([]v1alpha1.WorkerPlacement, 0, len(bs))
	for _, b := range bs {
		p := v1alpha1.WorkerPlacement{Rank: int32(b.Worker), Pod: PodName(job, gen, b.Worker), Node: b.Node}
		for _, g := range b.GPUs {
			p.GPUs = append(p.GPUs, int32(g.Index))
			p.GPUMilli = int32(g.Milli)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b v1alpha1.WorkerPlacement) int { return int(a.Rank - b.Rank) })
	return out
}

// bindingOf is a placed rank as the core sees it.
func bindingOf(jobKey string, r core.Request, p v1alpha1.WorkerPlacement) core.Binding {
	b := core.Binding{Job: jobKey, Worker: int(p.Rank), Node: p.Node, CPUMilli: r.CPUMilli, MemoryMiB: r.MemoryMiB}
	for _, g := range p.GPUs {
		b.GPUs = append(b.GPUs, core.GPUShare{Index: int(g), Milli: int64(p.GPUMilli)})
	}
	return b
}

// podPlacement reads where a pod is: its node (the binding, else the
// annotation) and its GPUs from the annotations.
func podPlacement(p *corev1.Pod) (v1alpha1.WorkerPlacement, error) {
	wp := v1alpha1.WorkerPlacement{Pod: p.Name, Node: p.Spec.NodeName}
	if wp.Node == "" {
		wp.Node = p.Annotations[AnnotationNode]
	}
	rank, err := strconv.Atoi(p.Labels[LabelRank])
	if err != nil || rank < 0 {
		return wp, fmt.Errorf("pod %s/%s label %s %q: want a rank >= 0", p.Namespace, p.Name, LabelRank, p.Labels[LabelRank])
	}
	wp.Rank = int32(rank)
	if wp.GPUs, err = parseGPUs(p.Annotations[AnnotationGPUs]); err != nil {
		return wp, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if len(wp.GPUs) > 0 {
		m, err := strconv.Atoi(p.Annotations[AnnotationGPUMilli])
		if err != nil || m < 1 || m > core.MilliPerGPU {
			return wp, fmt.Errorf("pod %s/%s annotation %s %q: want 1..%d", p.Namespace, p.Name, AnnotationGPUMilli, p.Annotations[AnnotationGPUMilli], core.MilliPerGPU)
		}
		wp.GPUMilli = int32(m)
	}
	return wp, nil
}

// podGeneration is the gang generation in a pod's label (-1 if none).
func podGeneration(p *corev1.Pod) int32 {
	g, err := strconv.ParseInt(p.Labels[LabelGeneration], 10, 32)
	if err != nil {
		return -1
	}
	return int32(g)
}

// rendezvous is rank 0's address through the job's headless Service.
func rendezvous(j *v1alpha1.TrainingJob) string {
	return fmt.Sprintf("%s.%s.%s.svc:%d", hostname(j.Name, 0), j.Name, j.Namespace, port(j))
}

// ringPort is where each rank serves its ring data path (the all-reduce
// traffic): the port after the rendezvous port, or the one before it at
// the top of the range. Ranks reach it through the headless Service's
// per-pod names, which forward every port.
func ringPort(j *v1alpha1.TrainingJob) int32 {
	if p := port(j); p < 65535 {
		return p + 1
	}
	return 65534
}

func port(j *v1alpha1.TrainingJob) int32 {
	if p := j.Spec.Template.RendezvousPort; p > 0 {
		return p
	}
	return v1alpha1.DefaultRendezvousPort
}

// ownerRef makes the job own what the scheduler creates for it, so that
// deleting the job deletes them.
func ownerRef(j *v1alpha1.TrainingJob) metav1.OwnerReference {
	ctrl := true
	return metav1.OwnerReference{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "TrainingJob",
		Name: j.Name, UID: j.UID, Controller: &ctrl,
	}
}

// DefaultCheckpointInterval is the CRD's default spec.checkpointInterval.
const DefaultCheckpointInterval = 10 * time.Minute

// WorkerVars are the environment variables every rank of j gets, in a pod
// and under the local executor alike: who it is in the gang, its GPUs
// (NVML indices "0,1" and the share of each), and the job's dataset, model
// and checkpoint settings, which the trainer reads as its flags' defaults.
// What differs between the two (job id, addresses, pod and node names) the
// callers add.
func WorkerVars(j *v1alpha1.TrainingJob, gen int32, rank int, gpus string, gpuMilli int64) ([][2]string, error) {
	modelJSON, err := json.Marshal(j.Spec.Model)
	if err != nil {
		return nil, fmt.Errorf("job %s/%s spec.model: %w", j.Namespace, j.Name, err)
	}
	visible := gpus
	if visible == "" {
		visible = "void" // the NVIDIA runtime then exposes no GPU
	}
	interval := DefaultCheckpointInterval
	if ci := j.Spec.CheckpointInterval; ci != nil {
		interval = ci.Duration
	}
	vars := [][2]string{
		{EnvJob, j.Name},
		{EnvGeneration, strconv.Itoa(int(gen))},
		{EnvRank, strconv.Itoa(rank)},
		{EnvWorldSize, strconv.Itoa(int(j.Spec.Workers))},
		{EnvGPUIndices, gpus},
		{EnvGPUMilli, strconv.FormatInt(gpuMilli, 10)},
		{EnvVisibleDevices, visible},
		{EnvDataset, j.Spec.Dataset.Name},
		{EnvDatasetVersion, j.Spec.Dataset.Version},
		{EnvModelConfig, string(modelJSON)},
		{EnvCheckpointInterval, interval.String()},
	}
	if c := j.Status.LatestCheckpoint; c != nil && c.Path != "" {
		vars = append(vars, [2]string{EnvResumeFrom, c.Path})
	}
	return vars, nil
}

// workerUID runs every rank: the project image's non-root user.
const workerUID int64 = 65532

func ptrTo[T any](v T) *T { return &v }

// WorkerPod builds one rank's pod as the scheduler creates it, unbound: it
// binds it once every pod of the gang exists. grace is the pod's
// termination grace in seconds.
func WorkerPod(j *v1alpha1.TrainingJob, gen int32, p v1alpha1.WorkerPlacement, schedulerName string, grace int64) (*corev1.Pod, error) {
	rank := int(p.Rank)
	gpus := formatGPUs(p.GPUs)
	common, err := WorkerVars(j, gen, rank, gpus, int64(p.GPUMilli))
	if err != nil {
		return nil, err
	}
	env := slices.Clone(j.Spec.Template.Env)
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	ours := []corev1.EnvVar{
		{Name: EnvJobID, Value: key(j.Namespace, j.Name)},
		{Name: EnvRendezvous, Value: rendezvous(j)},
		{Name: EnvListen, Value: fmt.Sprintf(":%d", port(j))},
		{Name: EnvRingListen, Value: fmt.Sprintf(":%d", ringPort(j))},
		field(EnvNamespace, "metadata.namespace"),
		field(EnvPodName, "metadata.name"),
		field(EnvNodeName, "spec.nodeName"),
	}
	for _, v := range common {
		ours = append(ours, corev1.EnvVar{Name: v[0], Value: v[1]})
	}
	// Ours win over the template's: drop the template's of the same name.
	env = slices.DeleteFunc(env, func(e corev1.EnvVar) bool {
		return slices.ContainsFunc(ours, func(o corev1.EnvVar) bool { return o.Name == e.Name })
	})
	env = append(env, ours...)

	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	if q := j.Spec.Template.Resources.CPU; q != nil && !q.IsZero() {
		res.Requests[corev1.ResourceCPU] = *q
	}
	if q := j.Spec.Template.Resources.Memory; q != nil && !q.IsZero() {
		res.Requests[corev1.ResourceMemory] = *q
	}
	// Whole GPUs are requested as the device plugin's resource; a share of
	// one is not (the device plugin cannot split a GPU) and is accounted by
	// the scheduler alone.
	if n := len(p.GPUs); n > 0 && p.GPUMilli == core.MilliPerGPU {
		q := *resource.NewQuantity(int64(n), resource.DecimalSI)
		res.Requests[GPUResource] = q
		res.Limits[GPUResource] = q
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      PodName(j.Name, gen, rank),
			Namespace: j.Namespace,
			Labels: map[string]string{
				LabelJob:        j.Name,
				LabelGeneration: strconv.Itoa(int(gen)),
				LabelRank:       strconv.Itoa(rank),
				LabelManagedBy:  managedBy,
			},
			Annotations: map[string]string{
				AnnotationNode:     p.Node,
				AnnotationGPUs:     gpus,
				AnnotationGPUMilli: strconv.Itoa(int(p.GPUMilli)),
			},
			OwnerReferences: []metav1.OwnerReference{ownerRef(j)},
		},
		Spec: corev1.PodSpec{
			SchedulerName:                 schedulerName,
			RestartPolicy:                 corev1.RestartPolicyNever,
			Hostname:                      hostname(j.Name, rank),
			Subdomain:                     j.Name,
			ServiceAccountName:            j.Spec.Template.ServiceAccountName,
			TerminationGracePeriodSeconds: &grace,
			// Pod Security "restricted": a namespace that enforces it admits
			// the ranks. The UID is the project image's user.
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptrTo(true),
				RunAsUser:      ptrTo(workerUID),
				RunAsGroup:     ptrTo(workerUID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			// The root filesystem is read-only; libraries that want a
			// scratch directory get /tmp.
			Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			// GPU nodes are commonly tainted so that only GPU work lands
			// there; the scheduler chose this node for its GPUs.
			Tolerations: []corev1.Toleration{{Key: string(GPUResource), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Containers: []corev1.Container{{
				Name:            containerName,
				Image:           j.Spec.Template.Image,
				ImagePullPolicy: j.Spec.Template.ImagePullPolicy,
				Command:         slices.Clone(j.Spec.Template.Command),
				Args:            slices.Clone(j.Spec.Template.Args),
				Env:             env,
				Resources:       res,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptrTo(false),
					ReadOnlyRootFilesystem:   ptrTo(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
				Ports: []corev1.ContainerPort{
					{Name: "rendezvous", ContainerPort: port(j), Protocol: corev1.ProtocolTCP},
					{Name: "ring", ContainerPort: ringPort(j), Protocol: corev1.ProtocolTCP},
				},
			}},
		},
	}
	return pod, nil
}

// headlessService gives every rank a DNS name (<job>-<rank>.<job>) and
// rank 0's rendezvous address, ready or not.
func headlessService(j *v1alpha1.TrainingJob) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            j.Name,
			Namespace:       j.Namespace,
			Labels:          map[string]string{LabelJob: j.Name, LabelManagedBy: managedBy},
			OwnerReferences: []metav1.OwnerReference{ownerRef(j)},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 map[string]string{LabelJob: j.Name},
			PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{
				Name: "rendezvous", Port: port(j), TargetPort: intstr.FromInt32(port(j)), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// podRequests is what a pod asks of its node: the larger of its
// containers' sum and any one init container, plus overhead.
func podRequests(p *corev1.Pod) (cpuMilli, memMiB int64) {
	var cpu, mem int64
	for _, c := range p.Spec.Containers {
		cpu += c.Resources.Requests.Cpu().MilliValue()
		mem += c.Resources.Requests.Memory().Value()
	}
	for _, c := range p.Spec.InitContainers {
		cpu = max(cpu, c.Resources.Requests.Cpu().MilliValue())
		mem = max(mem, c.Resources.Requests.Memory().Value())
	}
	cpu += p.Spec.Overhead.Cpu().MilliValue()
	mem += p.Spec.Overhead.Memory().Value()
	return cpu, (mem + 1<<20 - 1) >> 20
}

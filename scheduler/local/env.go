package local

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/controller"
)

// Worker is one rank of a gang as the executor starts it.
type Worker struct {
	Rank int
	// Rendezvous is rank 0's address (host:port) on loopback.
	Rendezvous string
	// GPUs are the NVML device indices the core bound; GPUMilli the share
	// of each (1000 for whole GPUs).
	GPUs     []int
	GPUMilli int64
	// Generation counts placements of the gang, as on Kubernetes.
	Generation int32
	// ResumeFrom is the job's latest checkpoint prefix, if any.
	ResumeFrom string
}

// WorkerEnv is the environment of one rank: base (the executor's own,
// without any BABELFISH_* of a rank), then the template's env, then the
// same variables the Kubernetes controller gives a worker pod, which win.
// The trainer reads the job's dataset and model from them, so `babelfish
// trainer` starts the same way under both. It fails on a spec it cannot
// encode.
func WorkerEnv(base []string, j *v1alpha1.TrainingJob, w Worker) ([]string, error) {
	gpus := make([]string, len(w.GPUs))
	for i, g := range w.GPUs {
		gpus[i] = strconv.Itoa(g)
	}
	idx := strings.Join(gpus, ",")
	common, err := controller.WorkerVars(j, w.Generation, w.Rank, idx, w.GPUMilli)
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:0"
	if w.Rank == 0 {
		listen = w.Rendezvous
	}
	ours := [][2]string{
		// The trainer names checkpoints after the job id; locally there is
		// no namespace, so the id is the name.
		{controller.EnvJobID, j.Name},
		{controller.EnvRendezvous, w.Rendezvous},
		{controller.EnvListen, listen},
		// CUDA_VISIBLE_DEVICES does locally what the container runtime does
		// with NVIDIA_VISIBLE_DEVICES in a pod: "" hides every GPU.
		{"CUDA_VISIBLE_DEVICES", idx},
		{controller.EnvNodeName, LocalNode},
		{controller.EnvPodName, fmt.Sprintf("%s-%d-%d", j.Name, w.Generation, w.Rank)},
	}
	for _, v := range common {
		// The executor knows the checkpoint to resume from; the job's
		// status may lag it.
		if v[0] != controller.EnvResumeFrom {
			ours = append(ours, v)
		}
	}
	if w.ResumeFrom != "" {
		ours = append(ours, [2]string{controller.EnvResumeFrom, w.ResumeFrom})
	}
	override := func(name string) bool {
		return slices.ContainsFunc(ours, func(o [2]string) bool { return o[0] == name })
	}
	env := make([]string, 0, len(base)+len(j.Spec.Template.Env)+len(ours))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		// A rank's identity comes from the executor only: an executor
		// started from inside a worker must not leak its own.
		if override(name) || name == controller.EnvResumeFrom || name == "BABELFISH_PEERS" || name == "BABELFISH_RING_PEERS" || name == "BABELFISH_ADVERTISE" {
			continue
		}
		env = append(env, kv)
	}
	for _, e := range j.Spec.Template.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("job %s spec.template.env %s: valueFrom is not supported locally", j.Name, e.Name)
		}
		if !override(e.Name) {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	for _, o := range ours {
		env = append(env, o[0]+"="+o[1])
	}
	return env, nil
}

// Argv is the command line of a rank: the template's command and args as
// the babelfish image would run them, with the image's `babelfish` being
// self (this binary). No command and no args runs `self trainer`; a
// command that is not babelfish runs as given (looked up on PATH).
func Argv(self string, t *v1alpha1.WorkerTemplate) []string {
	switch {
	case len(t.Command) == 0 && len(t.Args) == 0:
		return []string{self, "trainer"}
	case len(t.Command) == 0:
		return append([]string{self}, t.Args...)
	case filepath.Base(t.Command[0]) == "babelfish":
		return slices.Concat([]string{self}, t.Command[1:], t.Args)
	default:
		return slices.Concat(t.Command, t.Args)
	}
}

package local

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/controller"
	"babelfish.dev/babelfish/scheduler/core"
)

// Defaults the CRD applies on Kubernetes; the local executor applies the
// same ones so a job file means the same thing in both places.
const (
	DefaultCheckpointInterval = controller.DefaultCheckpointInterval
	DefaultBackoffLimit       = 3
	DefaultBatchSize          = 64
)

var (
	dns1035     = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	datasetName = regexp.MustCompile(`^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$`)
	datasetVer  = regexp.MustCompile(`^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$`)
	langCode    = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	queueName   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	metricName  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// Validate checks a TrainingJob as the CRD's schema does on Kubernetes
// (there the API server rejects it before the scheduler sees it), and
// what the local executor cannot do (env from the downward API). Every
// error names the field and its limit.
func Validate(j *v1alpha1.TrainingJob) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if j.APIVersion != "" && j.APIVersion != v1alpha1.GroupVersion.String() {
		bad("apiVersion %q: want %s", j.APIVersion, v1alpha1.GroupVersion.String())
	}
	if j.Kind != "" && j.Kind != "TrainingJob" {
		bad("kind %q: want TrainingJob", j.Kind)
	}
	switch n := j.Name; {
	case n == "":
		bad("metadata.name: required")
	case len(n) > v1alpha1.MaxNameLength:
		bad("metadata.name %q: at most %d characters", n, v1alpha1.MaxNameLength)
	case !dns1035.MatchString(n):
		bad("metadata.name %q: must be a DNS-1035 label (lower case letters, digits and '-', starting with a letter)", n)
	}
	s := &j.Spec
	pattern := func(field, v string, re *regexp.Regexp, maxLen int, required bool) {
		switch {
		case v == "" && required:
			bad("%s: required", field)
		case v == "":
		case len(v) > maxLen:
			bad("%s %q: at most %d characters", field, v, maxLen)
		case !re.MatchString(v):
			bad("%s %q: must match %s", field, v, re)
		}
	}
	pattern("spec.dataset.name", s.Dataset.Name, datasetName, 128, true)
	pattern("spec.dataset.version", s.Dataset.Version, datasetVer, 64, true)
	pattern("spec.model.name", s.Model.Name, datasetName, 128, false)
	if n := len(s.Model.Languages); n < 2 || n > 256 {
		bad("spec.model.languages: %d given, want 2..256", n)
	}
	for i, l := range s.Model.Languages {
		if !langCode.MatchString(l) {
			bad("spec.model.languages[%d] %q: must be an ISO 639 code (%s)", i, l, langCode)
		}
		if slices.Contains(s.Model.Languages[:i], l) {
			bad("spec.model.languages[%d] %q: duplicate", i, l)
		}
	}
	if st := s.Model.Steps; st < 1 || st > 100000000 {
		bad("spec.model.steps %d: want 1..100000000", st)
	}
	if b := s.Model.BatchSize; b < 0 || b > 1048576 {
		bad("spec.model.batchSize %d: want 1..1048576", b)
	}
	if lr := s.Model.LearningRate; lr != nil && (*lr <= 0 || *lr > 10) {
		bad("spec.model.learningRate %g: want > 0 and <= 10", *lr)
	}
	if s.Model.Seed < 0 {
		bad("spec.model.seed %d: want >= 0", s.Model.Seed)
	}
	if w := s.Workers; w < 1 || w > v1alpha1.MaxWorkers {
		bad("spec.workers %d: want 1..%d", w, v1alpha1.MaxWorkers)
	}
	if g := s.GPUsPerWorker; g < 0 || g > v1alpha1.MaxGPUsPerWorker {
		bad("spec.gpusPerWorker %d: want 0..%d", g, v1alpha1.MaxGPUsPerWorker)
	}
	if m := s.GPUMilli; m != nil {
		if *m < 1 || *m > core.MilliPerGPU {
			bad("spec.gpuMilli %d: want 1..%d", *m, core.MilliPerGPU)
		}
		if s.GPUsPerWorker != 1 {
			bad("spec.gpuMilli: a share of one GPU needs gpusPerWorker: 1 (got %d)", s.GPUsPerWorker)
		}
	}
	if len(s.GPUModels) > 16 {
		bad("spec.gpuModels: %d given, at most 16", len(s.GPUModels))
	}
	pattern("spec.queue", s.Queue, queueName, 63, false)
	if p := s.Priority; p < 0 || p > v1alpha1.MaxPriority {
		bad("spec.priority %d: want 0..%d", p, v1alpha1.MaxPriority)
	}
	if ci := s.CheckpointInterval; ci != nil && (ci.Duration < 10*time.Second || ci.Duration > 24*time.Hour) {
		bad("spec.checkpointInterval %v: want 10s..24h", ci.Duration)
	}
	if bl := s.BackoffLimit; bl != nil && (*bl < 0 || *bl > v1alpha1.MaxBackoffLimit) {
		bad("spec.backoffLimit %d: want 0..%d", *bl, v1alpha1.MaxBackoffLimit)
	}
	switch s.Promotion.Mode {
	case "", v1alpha1.PromotionManual:
	case v1alpha1.PromotionAuto:
		if s.Promotion.Metric == "" {
			bad("spec.promotion.metric: required when mode is Auto")
		}
	default:
		bad("spec.promotion.mode %q: want Manual or Auto", s.Promotion.Mode)
	}
	pattern("spec.promotion.metric", s.Promotion.Metric, metricName, 63, false)
	switch s.Promotion.Goal {
	case "", v1alpha1.Maximize, v1alpha1.Minimize:
	default:
		bad("spec.promotion.goal %q: want Maximize or Minimize", s.Promotion.Goal)
	}
	if img := s.Template.Image; img == "" || len(img) > 512 {
		bad("spec.template.image: required, 1..512 characters (the local executor runs this binary instead, but the same file runs on Kubernetes)")
	}
	for i, e := range s.Template.Env {
		if e.Name == "" {
			bad("spec.template.env[%d].name: required", i)
		}
		if e.ValueFrom != nil {
			bad("spec.template.env[%d] %s: valueFrom is not supported by the local executor (no pods, no downward API); give a value", i, e.Name)
		}
	}
	return errors.Join(errs...)
}

// Defaulted returns a copy of j with the CRD's defaults filled in.
func Defaulted(j *v1alpha1.TrainingJob) *v1alpha1.TrainingJob {
	out := j.DeepCopy()
	out.APIVersion, out.Kind = v1alpha1.GroupVersion.String(), "TrainingJob"
	s := &out.Spec
	if s.CheckpointInterval == nil {
		s.CheckpointInterval = &metav1.Duration{Duration: DefaultCheckpointInterval}
	}
	if s.BackoffLimit == nil {
		bl := int32(DefaultBackoffLimit)
		s.BackoffLimit = &bl
	}
	if s.Model.BatchSize == 0 {
		s.Model.BatchSize = DefaultBatchSize
	}
	if s.Promotion.Mode == "" {
		s.Promotion.Mode = v1alpha1.PromotionManual
	}
	if s.Promotion.Goal == "" {
		s.Promotion.Goal = v1alpha1.Maximize
	}
	if s.Template.RendezvousPort == 0 {
		s.Template.RendezvousPort = v1alpha1.DefaultRendezvousPort
	}
	return out
}

// Request is what one worker of j asks of the scheduling core, as the
// Kubernetes controller computes it.
func Request(j *v1alpha1.TrainingJob) core.Request { return controller.Request(j) }

// CoreJob is j as the scheduling core sees it.
func CoreJob(j *v1alpha1.TrainingJob) core.Job {
	return core.Job{
		Name:      j.Name,
		Queue:     j.Spec.Queue,
		Priority:  j.Spec.Priority,
		Workers:   int(j.Spec.Workers),
		Worker:    Request(j),
		Created:   j.CreationTimestamp.Time,
		Evictions: int(j.Status.Evictions),
	}
}

// Backoff is the wait before the n-th restart of a failed gang (n >= 1):
// base x 2^(n-1), at most max, as the Kubernetes controller waits.
func Backoff(n int32, base, max time.Duration) time.Duration {
	d := base
	for i := int32(1); i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

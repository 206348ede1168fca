package trainer

import (
	"context"
	"log/slog"
	"time"
)

// Phase is where a rank's job stands.
type Phase string

// Phases a StatusReporter sees, in order; a run ends in one of the last
// three.
const (
	PhaseStarting      Phase = "Starting"
	PhaseLearningUnits Phase = "LearningUnits"
	PhaseTraining      Phase = "Training"
	PhaseCheckpointing Phase = "Checkpointing"
	PhaseSucceeded     Phase = "Succeeded"
	PhaseStopped       Phase = "Stopped" // a stop request: checkpointed, resumable
	PhaseFailed        Phase = "Failed"
)

// Status is what the scheduler copies into a TrainingJob's status.
type Status struct {
	Phase      Phase
	Step       int64
	TotalSteps int64
	// Loss is the mean per-example loss of the last step (nats).
	Loss float64
	// Eval holds evaluation metrics by name, when any were computed.
	Eval map[string]float64
	// LatestCheckpoint is the object-store prefix of the newest committed
	// checkpoint ("" when none).
	LatestCheckpoint string
	StepsPerSecond   float64
	SamplesPerSecond float64
	ETA              time.Duration
	// Message explains a failure.
	Message string
}

// StatusReporter receives a rank's status: at every phase change, every
// checkpoint and every Config.LogEvery steps. Only rank 0's reports matter
// to the scheduler; Report must not block training for long.
type StatusReporter interface {
	Report(ctx context.Context, s Status)
}

// NopReporter drops every report.
type NopReporter struct{}

// Report implements StatusReporter.
func (NopReporter) Report(context.Context, Status) {}

// LogReporter logs every report at info level.
type LogReporter struct{ Log *slog.Logger }

// Report implements StatusReporter.
func (r LogReporter) Report(ctx context.Context, s Status) {
	l := r.Log
	if l == nil {
		l = slog.Default()
	}
	attrs := []any{"phase", s.Phase, "step", s.Step, "of", s.TotalSteps, "loss", s.Loss,
		"steps_per_s", s.StepsPerSecond, "samples_per_s", s.SamplesPerSecond, "eta", s.ETA.Round(time.Second)}
	if s.LatestCheckpoint != "" {
		attrs = append(attrs, "checkpoint", s.LatestCheckpoint)
	}
	for k, v := range s.Eval {
		attrs = append(attrs, "eval_"+k, v)
	}
	if s.Message != "" {
		attrs = append(attrs, "message", s.Message)
	}
	l.InfoContext(ctx, "trainer status", attrs...)
}

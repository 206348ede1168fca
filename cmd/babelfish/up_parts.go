package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/scheduler/dashboard"
	"babelfish.dev/babelfish/scheduler/local"
	"babelfish.dev/babelfish/trainer"
)

// upSource feeds the dashboard from `up`'s own parts.
type upSource struct {
	agent *nvml.Agent
	// agentURL is where the agent serves /metrics: read like any node's
	// agent, it gives utilization, temperature and power too.
	agentURL string
	exec     *local.Executor
	store    *objstore.Client
	model    string
	serving  func(context.Context) (dashboard.Serving, error)
}

func newDashboard(src *upSource) (http.Handler, error) {
	return dashboard.New(src, dashboard.WithTitle("Babelfish (up)"), dashboard.WithLogger(slog.Default()))
}

func (s *upSource) GPUs(ctx context.Context) ([]dashboard.Node, error) {
	n := dashboard.Node{Name: local.LocalNode}
	if s.agentURL != "" {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rows, err := nvml.ScrapeAgent(sctx, http.DefaultClient, s.agentURL)
		cancel()
		if err == nil {
			for _, r := range rows {
				dg := dashboard.GPU{Index: r.Index, UUID: r.UUID, Model: r.Model, UtilPct: r.UtilPct,
					MemUsedMiB: r.MemUsedMiB, MemTotalMiB: r.MemTotalMiB, TempC: r.TempC, PowerW: r.PowerW,
					Healthy: r.Healthy == nil || *r.Healthy, Reason: r.Reason, Pods: r.Pods}
				n.GPUs = append(n.GPUs, dg)
			}
			return []dashboard.Node{n}, nil
		}
		slog.Debug("up dashboard: reading the GPU agent's metrics; showing its snapshot", "err", err)
	}
	// The agent's own snapshot: memory and health, no live readings.
	for _, g := range s.agent.GPUs() {
		dg := dashboard.GPU{Index: g.Index, UUID: g.UUID, Model: g.Model, Healthy: g.Healthy, Reason: g.Reason}
		total := float64(g.MemoryMiB)
		dg.MemTotalMiB = &total
		if g.FreeMiB != nil {
			used := float64(g.MemoryMiB - *g.FreeMiB)
			dg.MemUsedMiB = &used
		}
		n.GPUs = append(n.GPUs, dg)
	}
	return []dashboard.Node{n}, nil
}

func (s *upSource) Jobs(context.Context) ([]dashboard.Job, error) {
	jobs := s.exec.List()
	out := make([]dashboard.Job, 0, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		dj := dashboard.Job{
			Name: j.Name, Queue: j.Spec.Queue, Phase: string(j.Status.Phase), Priority: j.Spec.Priority,
			Workers: int(j.Spec.Workers), GPUsPerWorker: int(j.Spec.GPUsPerWorker),
			Step: j.Status.Step, Steps: j.Spec.Model.Steps, Loss: j.Status.Loss,
			Message: jobMessage(j), Created: j.CreationTimestamp.Time,
		}
		if len(j.Status.Placement) > 0 {
			dj.Nodes = []string{local.LocalNode}
		}
		out = append(out, dj)
	}
	return out, nil
}

func (s *upSource) Releases(ctx context.Context) ([]dashboard.Release, error) {
	reg, err := registry.New(s.store, s.model)
	if err != nil {
		return nil, err
	}
	rels, err := reg.List(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := reg.Current(ctx)
	if err != nil && !errors.Is(err, registry.ErrNoCurrent) {
		return nil, err
	}
	out := make([]dashboard.Release, 0, len(rels))
	for i := len(rels) - 1; i >= 0; i-- {
		r := rels[i]
		dr := dashboard.Release{Model: r.Model, Release: r.Number, Current: r.Number == cur.Release, Source: r.Checkpoint, Created: r.Created}
		if v, ok := r.Metrics["concept_accuracy"]; ok {
			dr.MetricName, dr.Metric = "concept_accuracy", &v
		}
		out = append(out, dr)
	}
	return out, nil
}

func (s *upSource) Serving(ctx context.Context) (dashboard.Serving, error) {
	if s.serving == nil {
		return dashboard.Serving{}, errors.New("serving is not running under up")
	}
	return s.serving(ctx)
}

// autoPromote carries out a finished job's Auto promotion policy: its last
// checkpoint becomes a release of its model when the policy's metric beats
// the current release's.
func autoPromote(ctx context.Context, store *objstore.Client, defaultModel string, j v1alpha1.TrainingJob, log *slog.Logger) {
	p := j.Spec.Promotion
	if p.Mode != v1alpha1.PromotionAuto || j.Status.Phase != v1alpha1.PhaseSucceeded {
		return
	}
	log = log.With("job", j.Name)
	ck := j.Status.LatestCheckpoint
	if ck == nil || ck.Path == "" {
		log.Warn("auto promotion: the job has no checkpoint")
		return
	}
	name := j.Spec.Model.Name
	if name == "" {
		name = defaultModel
	}
	reg, err := registry.New(store, name, registry.WithLogger(log))
	if err != nil {
		log.Error("auto promotion", "err", err)
		return
	}
	candidate, err := checkpointMetrics(ctx, store, ck.Path, j.Status.EvalMetrics, p.Metric, true, log)
	if err != nil {
		log.Error("auto promotion: evaluating the checkpoint", "checkpoint", ck.Path, "err", err)
		return
	}
	var current map[string]float64
	cur, err := reg.Current(ctx)
	switch {
	case errors.Is(err, registry.ErrNoCurrent):
	case err != nil:
		log.Error("auto promotion: reading the current release", "err", err)
		return
	default:
		rel, err := reg.Get(ctx, cur.Release)
		if err != nil {
			log.Error("auto promotion: reading the current release", "err", err)
			return
		}
		// The current release is compared by what was measured on it;
		// it is not evaluated again here.
		if current, err = checkpointMetrics(ctx, store, rel.Checkpoint, rel.Metrics, p.Metric, false, log); err != nil {
			log.Warn("auto promotion: the current release's evaluation is unreadable", "release", rel.Name(), "err", err)
		}
	}
	d := registry.ShouldPromote(registry.Policy{Metric: p.Metric, Goal: registry.Goal(p.Goal)}, candidate, current)
	if !d.Promote {
		log.Info("auto promotion: not promoted", "model", name, "why", d.Reason)
		return
	}
	rel, err := reg.Promote(ctx, ck.Path, registry.WithNote(fmt.Sprintf("auto: job %s: %s", j.Name, d.Reason)), registry.WithMetrics(candidate))
	if err != nil {
		log.Error("auto promotion", "model", name, "checkpoint", ck.Path, "err", err)
		return
	}
	log.Info("auto promotion: promoted", "release", rel.Name(), "checkpoint", ck.Path, "why", d.Reason)
}

// checkpointMetrics returns known metrics when they hold the policy's
// metric; else the newest evaluation stored under the checkpoint (`babelfish
// eval` stores them); else, when evaluate is set, it evaluates the
// checkpoint with eval's defaults and stores the report.
func checkpointMetrics(ctx context.Context, store *objstore.Client, ck string, known map[string]float64, metric string, evaluate bool, log *slog.Logger) (map[string]float64, error) {
	if _, ok := known[metric]; ok {
		return known, nil
	}
	m, err := storedEval(ctx, store, ck, metric)
	if err != nil || m != nil {
		return m, err
	}
	if !evaluate {
		return nil, nil
	}
	log.Info("auto promotion: evaluating the checkpoint", "checkpoint", ck)
	rep, err := trainer.Evaluate(ctx, store, trainer.EvalConfig{Checkpoint: ck, PerDirection: 20, Beam: 1, Seed: 1, Log: log})
	if err != nil {
		return nil, err
	}
	if _, err := trainer.SaveEval(ctx, store, rep); err != nil {
		log.Warn("auto promotion: storing the evaluation", "err", err)
	}
	return rep.Metrics(), nil
}

// storedEval returns the metrics of the newest evaluation stored under
// checkpoint ck that has metric (any evaluation when metric is ""), or nil
// when there is none.
func storedEval(ctx context.Context, store *objstore.Client, ck, metric string) (map[string]float64, error) {
	prefixes, err := trainer.Evaluations(ctx, store, ck)
	if err != nil {
		return nil, err
	}
	for i := len(prefixes) - 1; i >= 0; i-- {
		rep, err := trainer.LoadEval(ctx, store, prefixes[i])
		if err != nil {
			return nil, err
		}
		if m := rep.Metrics(); metric == "" || hasKey(m, metric) {
			return m, nil
		}
	}
	return nil, nil
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

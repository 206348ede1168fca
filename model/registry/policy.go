package registry

import (
	"fmt"
	"math"
)

// Goal says which way a metric improves. The values match the TrainingJob
// API's MetricGoal, so a controller converts with Goal(spec.Goal).
type Goal string

// Goals.
const (
	Maximize Goal = "Maximize"
	Minimize Goal = "Minimize"
)

// Policy is an automatic promotion rule: promote a candidate whose Metric
// beats the current release's by more than MinImprovement.
type Policy struct {
	// Metric is an eval metric name (a key of a checkpoint's eval map).
	Metric string
	// Goal defaults to Maximize.
	Goal Goal
	// MinImprovement is the margin a candidate must beat the current
	// release by (in the metric's units, >= 0); 0 means any strict gain.
	MinImprovement float64
}

// Decision is ShouldPromote's answer and why, for logs and conditions.
type Decision struct {
	Promote bool
	Reason  string
}

// ShouldPromote decides whether a candidate checkpoint with eval metrics
// candidate should replace the current release, whose metrics are current
// (nil when the model has no release yet). It is pure: the same inputs
// always give the same decision. A candidate without the metric, or with a
// NaN or infinite value, is never promoted; a current release without it
// (or with a non-finite value) is beaten by any finite candidate.
func ShouldPromote(p Policy, candidate, current map[string]float64) Decision {
	if p.Metric == "" {
		return Decision{Reason: "policy names no metric"}
	}
	goal := p.Goal
	if goal == "" {
		goal = Maximize
	}
	if goal != Maximize && goal != Minimize {
		return Decision{Reason: fmt.Sprintf("policy goal %q: want %s or %s", p.Goal, Maximize, Minimize)}
	}
	if p.MinImprovement < 0 || math.IsNaN(p.MinImprovement) {
		return Decision{Reason: fmt.Sprintf("policy min improvement %g: want >= 0", p.MinImprovement)}
	}
	c, ok := candidate[p.Metric]
	if !ok {
		return Decision{Reason: fmt.Sprintf("candidate has no %s", p.Metric)}
	}
	if math.IsNaN(c) || math.IsInf(c, 0) {
		return Decision{Reason: fmt.Sprintf("candidate %s is %g", p.Metric, c)}
	}
	if current == nil {
		return Decision{Promote: true, Reason: fmt.Sprintf("no current release; candidate %s=%g", p.Metric, c)}
	}
	cur, ok := current[p.Metric]
	if !ok || math.IsNaN(cur) || math.IsInf(cur, 0) {
		return Decision{Promote: true, Reason: fmt.Sprintf("current release has no finite %s; candidate %s=%g", p.Metric, p.Metric, c)}
	}
	gain := c - cur
	if goal == Minimize {
		gain = cur - c
	}
	if gain > p.MinImprovement {
		return Decision{Promote: true, Reason: fmt.Sprintf("%s %g beats current %g (%s, margin %g)", p.Metric, c, cur, goal, p.MinImprovement)}
	}
	return Decision{Reason: fmt.Sprintf("%s %g does not beat current %g by more than %g (%s)", p.Metric, c, cur, p.MinImprovement, goal)}
}

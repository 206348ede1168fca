package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"

	"babelfish.dev/babelfish/scheduler/core"
)

// Defaults of Options.
const (
	DefaultSchedulerName  = "babelfish"
	DefaultPolicy         = "babelfish"
	DefaultBackoffBase    = 10 * time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultParallelism    = 16
	DefaultMinInterval    = 20 * time.Millisecond
	DefaultResync         = 30 * time.Second
	DefaultLeaseName      = "babelfish-scheduler"
	DefaultLeaseNamespace = "default"
	DefaultLeaseDuration  = 15 * time.Second
	DefaultRenewDeadline  = 10 * time.Second
	DefaultRetryPeriod    = 2 * time.Second
	// DefaultPodGracePeriod is how long a worker of a failed gang has to
	// exit: it lost a peer, so there is nothing left to checkpoint.
	DefaultPodGracePeriod = 30 * time.Second
)

// Options configure a Scheduler. The zero value of every field means its
// default.
type Options struct {
	// Namespace limits the TrainingJobs scheduled to one namespace; empty
	// means all.
	Namespace string
	// NodeSelector is a label selector of the nodes to schedule on (a
	// GPU pool); empty means every node.
	NodeSelector string
	// SchedulerName is spec.schedulerName of the worker pods.
	SchedulerName string
	// Policy is the core's scorer: one of core.PolicyNames().
	Policy string
	// DisablePreemption stops higher-priority gangs from evicting others.
	DisablePreemption bool
	// GracePeriod is how long a preempted gang has to checkpoint before
	// its pods are killed (core.DefaultGracePeriod).
	GracePeriod time.Duration
	// PodGracePeriod is the grace of pods deleted for other reasons (a
	// failed gang, a finished job): DefaultPodGracePeriod.
	PodGracePeriod time.Duration
	// MaxEvictions: a job preempted this often is never chosen again.
	MaxEvictions int
	// BackoffBase and BackoffMax bound the wait before a failed gang is
	// placed again: BackoffBase x 2^(restarts-1), at most BackoffMax.
	BackoffBase, BackoffMax time.Duration
	// Parallelism is how many gangs are submitted at once.
	Parallelism int
	// MinInterval is the least time between two passes: events arriving
	// within it are handled by one pass.
	MinInterval time.Duration
	// Resync runs a pass at least this often even without events.
	Resync time.Duration

	// LeaderElection turns on leader election on a Lease named LeaseName
	// in LeaseNamespace; only the leader schedules.
	LeaderElection bool
	// Identity names this replica in the Lease; default host name plus a
	// start time.
	Identity       string
	LeaseName      string
	LeaseNamespace string
	LeaseDuration  time.Duration
	RenewDeadline  time.Duration
	RetryPeriod    time.Duration

	// Registerer receives the scheduler's metrics; nil registers none.
	Registerer prometheus.Registerer

	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// beforeBind, in tests, runs before each pod is bound, with the
	// context of the binding.
	beforeBind func(ctx context.Context, pod string)

	// AfterPass, when set, is called after every pass, on the loop's
	// goroutine: the world the pass left is stable until it returns,
	// except for what others change. Tests and benchmarks use it.
	AfterPass func(PassStats)
}

// PassStats says what one pass did.
type PassStats struct {
	Pass     int
	Duration time.Duration
	// Admitted gangs and the pods bound for them (repairs included).
	Admitted, PodsBound int
	// Preempted jobs, restarted gangs, and jobs left pending.
	Preempted, Restarted, Pending int
	// Err is the pass's first error, if any; the loop retries.
	Err error
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.SchedulerName == "" {
		c.SchedulerName = DefaultSchedulerName
	}
	if c.Policy == "" {
		c.Policy = DefaultPolicy
	}
	if !slices.Contains(core.PolicyNames(), c.Policy) {
		return c, fmt.Errorf("scheduler policy %q: want one of %v", c.Policy, core.PolicyNames())
	}
	def(&c.GracePeriod, core.DefaultGracePeriod)
	def(&c.PodGracePeriod, DefaultPodGracePeriod)
	def(&c.BackoffBase, DefaultBackoffBase)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.MinInterval, DefaultMinInterval)
	def(&c.Resync, DefaultResync)
	def(&c.LeaseDuration, DefaultLeaseDuration)
	def(&c.RenewDeadline, DefaultRenewDeadline)
	def(&c.RetryPeriod, DefaultRetryPeriod)
	if c.MaxEvictions == 0 {
		c.MaxEvictions = core.DefaultMaxEvictions
	}
	if c.Parallelism == 0 {
		c.Parallelism = DefaultParallelism
	}
	if c.LeaseName == "" {
		c.LeaseName = DefaultLeaseName
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = DefaultLeaseNamespace
	}
	if _, err := labels.Parse(c.NodeSelector); err != nil {
		return c, fmt.Errorf("scheduler node selector %q: %w", c.NodeSelector, err)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"grace period", c.GracePeriod}, {"pod grace period", c.PodGracePeriod},
		{"backoff base", c.BackoffBase}, {"backoff max", c.BackoffMax},
		{"min interval", c.MinInterval}, {"resync", c.Resync},
	} {
		if d.v < 0 {
			return c, fmt.Errorf("scheduler %s %v: must be > 0", d.name, d.v)
		}
	}
	switch {
	case c.BackoffMax < c.BackoffBase:
		return c, fmt.Errorf("scheduler backoff max %v: must be >= backoff base %v", c.BackoffMax, c.BackoffBase)
	case c.MaxEvictions < 0:
		return c, fmt.Errorf("scheduler max evictions %d: must be >= 0", c.MaxEvictions)
	case c.Parallelism < 1 || c.Parallelism > 1024:
		return c, fmt.Errorf("scheduler parallelism %d: must be in 1..1024", c.Parallelism)
	case c.LeaderElection && !(c.LeaseDuration > c.RenewDeadline && c.RenewDeadline*5 > c.RetryPeriod*6):
		return c, fmt.Errorf("scheduler lease duration %v, renew deadline %v, retry period %v: want lease > renew > 1.2 x retry", c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
	}
	return c, nil
}

// backoff is the wait before a gang that failed for the n-th time (n >= 1)
// is placed again.
func (o *Options) backoff(n int32) time.Duration {
	d := o.BackoffBase
	for i := int32(1); i < n && d < o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, o.BackoffMax)
}

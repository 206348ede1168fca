package core

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Defaults of Config.
const (
	DefaultGracePeriod  = 2 * time.Minute
	DefaultMaxEvictions = 3
)

// Config tunes Schedule.
type Config struct {
	Scorer  Scorer   // ranks nodes; required
	Filters []Filter // nil means DefaultFilters
	// Preempt lets a higher-priority gang that cannot fit evict
	// lower-priority jobs (and jobs borrowing quota when its own queue is
	// within its nominal quota).
	Preempt bool
	// GracePeriod is how long a victim has to checkpoint before it is
	// killed; 0 means DefaultGracePeriod.
	GracePeriod time.Duration
	// MaxEvictions: a job evicted this many times is never chosen again, so
	// no job starves under a stream of higher-priority work; 0 means
	// DefaultMaxEvictions.
	MaxEvictions int
}

// Schedule makes one plan from a snapshot: it rebuilds the cluster from the
// running bindings, then takes the pending jobs in order (priority, then
// jobs within their queue's nominal quota, then the queue with the least
// weighted borrowing, then age), admits each through its queue, places it as
// a gang, and, when it cannot fit, may preempt. It is a pure function of the
// snapshot and config.
func Schedule(snap *Snapshot, cfg Config) (*Plan, error) {
	if cfg.Scorer == nil {
		return nil, fmt.Errorf("schedule config scorer: required")
	}
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.GracePeriod < 0 {
		return nil, fmt.Errorf("schedule config grace_period %v: must be >= 0", cfg.GracePeriod)
	}
	if cfg.MaxEvictions == 0 {
		cfg.MaxEvictions = DefaultMaxEvictions
	}
	opts := []PlacerOption{}
	if cfg.Filters != nil {
		opts = append(opts, WithFilters(cfg.Filters...))
	}
	placer := NewPlacer(cfg.Scorer, opts...)

	st, err := NewState(snap.Nodes)
	if err != nil {
		return nil, err
	}
	qs, err := newQueues(snap.Queues)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range snap.Running {
		rj := &snap.Running[i]
		if seen[rj.Name] {
			return nil, fmt.Errorf("running job %q: duplicate", rj.Name)
		}
		seen[rj.Name] = true
		for _, b := range rj.Bindings {
			if err := st.Apply(b); err != nil {
				return nil, fmt.Errorf("running job %s: %w", rj.Name, err)
			}
		}
		qs.charge(rj.Queue, rj.GPUMilli())
	}

	plan := &Plan{}
	var pending []Job
	for _, j := range snap.Pending {
		if seen[j.Name] {
			return nil, fmt.Errorf("pending job %q: duplicate name", j.Name)
		}
		seen[j.Name] = true
		if err := j.Validate(); err != nil {
			plan.Pending = append(plan.Pending, PendingJob{Job: j.Name, Reason: err.Error()})
			continue
		}
		if j.Queue != "" && qs.get(j.Queue) == nil {
			plan.Pending = append(plan.Pending, PendingJob{Job: j.Name, Reason: fmt.Sprintf("queue %q: not found", j.Queue)})
			continue
		}
		pending = append(pending, j)
	}
	sortJobs(pending)

	victims := map[string]bool{} // evicted in this plan: their room is spoken for
	for len(pending) > 0 {
		i := qs.next(pending)
		j := pending[i]
		pending = slices.Delete(pending, i, i+1)
		need := j.GPUMilli()
		if ok, why := qs.admit(j.Queue, need); !ok {
			plan.Pending = append(plan.Pending, PendingJob{Job: j.Name, Reason: why})
			continue
		}
		bs, err := placer.PlaceGang(st, &j)
		if err == nil {
			plan.Bindings = append(plan.Bindings, bs...)
			qs.charge(j.Queue, need)
			continue
		}
		reason := err.Error()
		if cfg.Preempt {
			ps, perr := preempt(st, placer, qs, snap, &j, victims, cfg)
			if perr == nil {
				for _, p := range ps {
					victims[p.Victim] = true
				}
				plan.Preemptions = append(plan.Preemptions, ps...)
				reason = fmt.Sprintf("waiting for %d preempted job(s) to checkpoint and exit (grace %v)", len(ps), cfg.GracePeriod)
			} else {
				reason += "; " + perr.Error()
			}
		}
		plan.Pending = append(plan.Pending, PendingJob{Job: j.Name, Reason: reason})
	}
	return plan, nil
}

// preempt chooses running jobs to evict so that j fits, losing the least
// work since their last checkpoint. Victims have lower priority than j, or
// borrow quota while j's queue is within its nominal quota; terminating
// jobs, jobs already chosen, and jobs evicted MaxEvictions times are
// spared. Victims never cause further preemption (no cascades): j merely
// waits for them to exit. The state is left as it was.
func preempt(st *State, placer *Placer, qs *queues, snap *Snapshot, j *Job, taken map[string]bool, cfg Config) ([]Preemption, error) {
	var cands []*RunningJob
	for i := range snap.Running {
		rj := &snap.Running[i]
		if rj.Terminating || taken[rj.Name] || rj.Evictions >= cfg.MaxEvictions {
			continue
		}
		if rj.Priority < j.Priority || (rj.Priority == j.Priority && qs.reclaims(j.Queue, rj.Queue)) {
			cands = append(cands, rj)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no lower-priority job to preempt")
	}
	// Least lost work first; then the lowest priority; then the smallest.
	slices.SortStableFunc(cands, func(a, b *RunningJob) int {
		if c := cmp.Compare(a.LostWork(snap.Now), b.LostWork(snap.Now)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.GPUMilli(), b.GPUMilli())
	})
	release := func(rj *RunningJob) {
		for _, b := range rj.Bindings {
			_ = st.Release(b) // applied above, so releasing cannot fail
		}
	}
	restore := func(rj *RunningJob) {
		for _, b := range rj.Bindings {
			_ = st.Apply(b) // released just before, so it fits again
		}
	}
	fits := func() bool {
		bs, err := placer.PlaceGang(st, j)
		for k := len(bs) - 1; k >= 0; k-- {
			_ = st.Release(bs[k])
		}
		return err == nil
	}
	var chosen []*RunningJob
	for _, c := range cands {
		release(c)
		chosen = append(chosen, c)
		if fits() {
			break
		}
	}
	if !fits() {
		for _, c := range chosen {
			restore(c)
		}
		return nil, fmt.Errorf("evicting every lower-priority job would still not make room")
	}
	// Spare victims that turn out not to be needed, costliest first.
	for k := len(chosen) - 1; k >= 0; k-- {
		restore(chosen[k])
		if fits() {
			chosen = slices.Delete(chosen, k, k+1)
			continue
		}
		release(chosen[k])
	}
	out := make([]Preemption, 0, len(chosen))
	for _, c := range chosen {
		restore(c)
		out = append(out, Preemption{
			Victim: c.Name, For: j.Name, GracePeriod: cfg.GracePeriod,
			Deadline: snap.Now.Add(cfg.GracePeriod), LostWork: c.LostWork(snap.Now),
		})
	}
	return out, nil
}

// queues tracks quota use: Kueue's ClusterQueues in one cohort, where a
// queue may borrow the quota others leave idle.
type queues struct {
	list  []*queueState
	byKey map[string]*queueState
}

type queueState struct {
	Queue
	used int64
}

func newQueues(qs []Queue) (*queues, error) {
	out := &queues{byKey: map[string]*queueState{}}
	for _, q := range qs {
		if err := q.Validate(); err != nil {
			return nil, err
		}
		if out.byKey[q.Name] != nil {
			return nil, fmt.Errorf("queue %q: duplicate", q.Name)
		}
		s := &queueState{Queue: q}
		if s.Weight == 0 {
			s.Weight = 1
		}
		out.list = append(out.list, s)
		out.byKey[q.Name] = s
	}
	return out, nil
}

func (qs *queues) get(name string) *queueState { return qs.byKey[name] }

func (qs *queues) charge(name string, milli int64) {
	if q := qs.get(name); q != nil {
		q.used += milli
	}
}

// idle is the quota other queues leave unused, which q may borrow.
func (qs *queues) idle(q *queueState) int64 {
	var idle, borrowed int64
	for _, o := range qs.list {
		if o == q {
			continue
		}
		idle += max(0, o.NominalGPUMilli-o.used)
		borrowed += max(0, o.used-o.NominalGPUMilli)
	}
	return max(0, idle-borrowed)
}

// admit reports whether a job needing milli may start in its queue.
func (qs *queues) admit(name string, milli int64) (bool, string) {
	q := qs.get(name)
	if q == nil {
		return true, ""
	}
	over := q.used + milli - q.NominalGPUMilli
	if over <= 0 {
		return true, ""
	}
	if q.BorrowingLimitGPUMilli >= 0 && over > q.BorrowingLimitGPUMilli {
		return false, fmt.Sprintf("queue %s: needs %d GPU milli beyond its nominal %d, borrowing limit is %d", q.Name, over, q.NominalGPUMilli, q.BorrowingLimitGPUMilli)
	}
	if idle := qs.idle(q); over > idle {
		return false, fmt.Sprintf("queue %s: needs %d GPU milli beyond its nominal %d, other queues leave %d idle", q.Name, over, q.NominalGPUMilli, idle)
	}
	return true, ""
}

// reclaims reports whether a job of queue `for` may evict a job of queue
// `from` at equal priority: `for` is within its nominal quota and `from`
// borrows.
func (qs *queues) reclaims(forQ, fromQ string) bool {
	f, o := qs.get(forQ), qs.get(fromQ)
	return f != nil && o != nil && f != o && f.used < f.NominalGPUMilli && o.used > o.NominalGPUMilli
}

// next picks the pending job to try next: the highest priority; among
// those, jobs that fit their queue's nominal quota first; then the queue
// that borrows least for its weight; then the order jobs are in.
func (qs *queues) next(js []Job) int {
	best, bestKey := -1, [3]float64{}
	for i := range js {
		j := &js[i]
		key := [3]float64{-float64(j.Priority), 1, 0}
		if q := qs.get(j.Queue); q == nil || q.used+j.GPUMilli() <= q.NominalGPUMilli {
			key[1] = 0
		} else {
			key[2] = float64(max(0, q.used-q.NominalGPUMilli)) / q.Weight
		}
		if best < 0 || less3(key, bestKey) {
			best, bestKey = i, key
		}
	}
	return best
}

func less3(a, b [3]float64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i] && !math.IsNaN(a[i])
		}
	}
	return false
}

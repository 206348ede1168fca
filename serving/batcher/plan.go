package batcher

import (
	"fmt"
	"time"
)

// Config tunes a Batcher.
type Config struct {
	// MaxBatch is the most requests one batch holds (>= 1); 1 turns
	// batching off.
	MaxBatch int
	// MaxDelay is how long the oldest queued request may wait for a batch
	// to fill before a partial batch runs; 0 runs whatever is queued as
	// soon as an executor is free.
	MaxDelay time.Duration
	// MaxQueue bounds the requests waiting (not yet running); beyond it
	// Submit rejects with an *OverloadError.
	MaxQueue int
	// Instances is how many batches may run at once (>= 1).
	Instances int
	// EagerBelow, when positive, runs a partial batch at once while fewer
	// than EagerBelow inputs are running, instead of holding it for
	// MaxDelay. Set to the CPU cores a model spreads a batch over, it
	// keeps cores from idling while a batch fills: at low load requests
	// run as they come, and once the cores are busy batches fill as
	// before. 1 runs a partial batch at once only when nothing runs.
	EagerBelow int
}

// Validate checks every field, naming the bad one and its limit.
func (c Config) Validate() error {
	switch {
	case c.MaxBatch < 1 || c.MaxBatch > 4096:
		return fmt.Errorf("batcher: MaxBatch %d: want 1..4096", c.MaxBatch)
	case c.MaxDelay < 0 || c.MaxDelay > time.Minute:
		return fmt.Errorf("batcher: MaxDelay %v: want 0..1m", c.MaxDelay)
	case c.MaxQueue < 1 || c.MaxQueue > 1<<20:
		return fmt.Errorf("batcher: MaxQueue %d: want 1..%d", c.MaxQueue, 1<<20)
	case c.Instances < 1 || c.Instances > 1024:
		return fmt.Errorf("batcher: Instances %d: want 1..1024", c.Instances)
	case c.EagerBelow < 0 || c.EagerBelow > 1<<16:
		return fmt.Errorf("batcher: EagerBelow %d: want 0..%d", c.EagerBelow, 1<<16)
	}
	return nil
}

// Item is what Plan sees of a queued request.
type Item[K comparable] struct {
	// Key groups requests that may share a batch (same decode options).
	Key      K
	Enqueued time.Time
	// Deadline is when the caller stops waiting; zero means never.
	Deadline time.Time
}

// Decision is what to do with the queue now.
type Decision struct {
	// Expired are indices of items whose deadline has passed: they leave
	// the queue with DeadlineExceeded.
	Expired []int
	// Batch are indices of items to run now as one batch, oldest first;
	// empty when nothing runs yet.
	Batch []int
	// WakeAt is when to plan again if nothing else happens (an arrival
	// or a finished batch); zero means only an event can change the plan.
	WakeAt time.Time
}

// Plan decides, for queue (oldest first) at time now with free executors
// free and inflight inputs running, which items have expired and which run
// now. A batch is the oldest live item and the next live items with its
// key, up to MaxBatch; it runs when it is full, when its oldest item has
// waited MaxDelay, or when fewer inputs than EagerBelow are running. Plan
// is pure: the same arguments always give the same decision.
func Plan[K comparable](cfg Config, queue []Item[K], now time.Time, free, inflight int) Decision {
	var d Decision
	head := -1
	var earliestDeadline time.Time
	for i, it := range queue {
		if !it.Deadline.IsZero() && !now.Before(it.Deadline) {
			d.Expired = append(d.Expired, i)
			continue
		}
		if head < 0 {
			head = i
		}
		if !it.Deadline.IsZero() && (earliestDeadline.IsZero() || it.Deadline.Before(earliestDeadline)) {
			earliestDeadline = it.Deadline
		}
	}
	if head < 0 {
		return d
	}
	wake := earliestDeadline
	if free > 0 {
		key := queue[head].Key
		var batch []int
		for i := head; i < len(queue) && len(batch) < cfg.MaxBatch; i++ {
			it := queue[i]
			if it.Key != key || (!it.Deadline.IsZero() && !now.Before(it.Deadline)) {
				continue
			}
			batch = append(batch, i)
		}
		due := queue[head].Enqueued.Add(cfg.MaxDelay)
		idle := inflight < cfg.EagerBelow
		if len(batch) == cfg.MaxBatch || !now.Before(due) || idle {
			d.Batch = batch
			// More may be runnable at once; the caller plans again
			// after taking this batch out.
			return d
		}
		if wake.IsZero() || due.Before(wake) {
			wake = due
		}
	}
	d.WakeAt = wake
	return d
}

// RetryAfter estimates how long a client rejected with queued requests
// ahead of it should wait: the batches those requests make, at batchTime
// each, spread over instances executors, bounded to [minRetry, maxRetry].
// With no batch timed yet (batchTime 0) it answers minRetry.
func RetryAfter(queued, maxBatch, instances int, batchTime time.Duration) time.Duration {
	const minRetry, maxRetry = 10 * time.Millisecond, 30 * time.Second
	if maxBatch < 1 {
		maxBatch = 1
	}
	if instances < 1 {
		instances = 1
	}
	batches := (queued + maxBatch - 1) / maxBatch
	rounds := (batches + instances - 1) / instances
	d := time.Duration(rounds) * batchTime
	return min(max(d, minRetry), maxRetry)
}

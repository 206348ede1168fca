package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned by Submit once Drain has begun: the caller should
// send the request to whatever replaced this batcher.
var ErrClosed = errors.New("batcher: closed")

// OverloadError rejects a request because the queue is full. RetryAfter is
// when the queue ahead of it should have cleared.
type OverloadError struct {
	Queued     int
	MaxQueue   int
	RetryAfter time.Duration
}

func (e *OverloadError) Error() string {
	return fmt.Sprintf("server overloaded: %d requests queued (MaxQueue %d); retry after %v", e.Queued, e.MaxQueue, e.RetryAfter)
}

// Exec runs one batch: all inputs share key. It returns one output per
// input, in order, or an error for the whole batch. ctx is cancelled when
// every caller in the batch has gone away, and carries the latest of their
// deadlines.
type Exec[K comparable, In, Out any] func(ctx context.Context, key K, ins []In) ([]Out, error)

// Info is how one request was served.
type Info struct {
	Queue   time.Duration // enqueue to batch start
	Compute time.Duration // the batch's Exec time
	Batch   int           // requests in its batch
}

// BatchStats describe one finished batch, for metrics.
type BatchStats struct {
	Size    int
	Compute time.Duration
	Err     error
}

// Option changes a Batcher.
type Option func(*options)

type options struct {
	onBatch func(BatchStats)
	now     func() time.Time
}

// OnBatch calls f after every batch (from the executor's goroutine).
func OnBatch(f func(BatchStats)) Option { return func(o *options) { o.onBatch = f } }

type result[Out any] struct {
	out  Out
	info Info
	err  error
}

type entry[K comparable, In, Out any] struct {
	Item[K]
	in   In
	ctx  context.Context
	done chan result[Out] // buffered 1: the sender never blocks
}

// Batcher queues requests and runs them in batches through Exec.
type Batcher[K comparable, In, Out any] struct {
	cfg  Config
	exec Exec[K, In, Out]
	opt  options

	mu        sync.Mutex
	queue     []*entry[K, In, Out]
	running   int // batches
	inflight  int // inputs in running batches
	closed    bool
	batchTime time.Duration // moving average, for RetryAfter
	kick      chan struct{} // buffered 1: "plan again"
	stopped   chan struct{} // closed when the loop has exited
}

// New starts a batcher; Drain stops it.
func New[K comparable, In, Out any](cfg Config, exec Exec[K, In, Out], opts ...Option) (*Batcher[K, In, Out], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if exec == nil {
		return nil, errors.New("batcher: exec is nil")
	}
	b := &Batcher[K, In, Out]{cfg: cfg, exec: exec, kick: make(chan struct{}, 1), stopped: make(chan struct{})}
	b.opt.now = time.Now
	for _, o := range opts {
		o(&b.opt)
	}
	go b.loop()
	return b, nil
}

// Config is the batcher's configuration.
func (b *Batcher[K, In, Out]) Config() Config { return b.cfg }

// Queued is how many requests wait (not running).
func (b *Batcher[K, In, Out]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Admit reports whether a Submit now would be queued, without queueing
// anything: a server calls it before decoding a request, so an overloaded
// server rejects before doing any work. It returns the *OverloadError or
// ErrClosed Submit would.
func (b *Batcher[K, In, Out]) Admit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.admitLocked()
}

func (b *Batcher[K, In, Out]) admitLocked() error {
	if b.closed {
		return ErrClosed
	}
	if len(b.queue) >= b.cfg.MaxQueue {
		return &OverloadError{Queued: len(b.queue), MaxQueue: b.cfg.MaxQueue,
			RetryAfter: RetryAfter(len(b.queue), b.cfg.MaxBatch, b.cfg.Instances, b.batchTime)}
	}
	return nil
}

// Submit queues in under key and waits for its result. It returns at once
// with an *OverloadError when the queue is full and with ErrClosed after
// Drain began; when ctx ends first it returns ctx's error (the request
// leaves the queue, or its batch is cancelled if it was the last caller
// waiting on it).
func (b *Batcher[K, In, Out]) Submit(ctx context.Context, key K, in In) (Out, Info, error) {
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, Info{}, err
	}
	e := &entry[K, In, Out]{in: in, ctx: ctx, done: make(chan result[Out], 1)}
	e.Key, e.Enqueued = key, b.opt.now()
	if dl, ok := ctx.Deadline(); ok {
		e.Deadline = dl
	}
	b.mu.Lock()
	if err := b.admitLocked(); err != nil {
		b.mu.Unlock()
		return zero, Info{}, err
	}
	b.queue = append(b.queue, e)
	b.mu.Unlock()
	b.poke()
	select {
	case r := <-e.done:
		return r.out, r.info, r.err
	case <-ctx.Done():
		b.mu.Lock()
		for i, q := range b.queue {
			if q == e {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		b.poke()
		return zero, Info{}, ctx.Err()
	}
}

func (b *Batcher[K, In, Out]) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Drain stops taking requests (Submit returns ErrClosed), runs everything
// already queued, and returns when the last batch has finished or ctx ends.
func (b *Batcher[K, In, Out]) Drain(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.poke()
	select {
	case <-b.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("batcher: drain: %w", ctx.Err())
	}
}

func (b *Batcher[K, In, Out]) loop() {
	defer close(b.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		b.mu.Lock()
		wake, exit := b.planLocked()
		b.mu.Unlock()
		if exit {
			return
		}
		if !wake.IsZero() {
			timer.Reset(max(time.Until(wake), 0))
		}
		select {
		case <-b.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// planLocked applies Plan until it has nothing more to start, and says when
// to look again and whether the loop is done (closed, empty, idle).
func (b *Batcher[K, In, Out]) planLocked() (time.Time, bool) {
	for {
		if b.closed && len(b.queue) == 0 && b.running == 0 {
			return time.Time{}, true
		}
		now := b.opt.now()
		items := make([]Item[K], len(b.queue))
		for i, e := range b.queue {
			items[i] = e.Item
		}
		cfg := b.cfg
		if b.closed {
			cfg.MaxDelay = 0 // draining: nothing more will join a batch
		}
		d := Plan(cfg, items, now, b.cfg.Instances-b.running, b.inflight)
		take := make(map[int]bool, len(d.Expired)+len(d.Batch))
		for _, i := range d.Expired {
			e := b.queue[i]
			e.done <- result[Out]{err: fmt.Errorf("batcher: deadline passed after %v in queue: %w", now.Sub(e.Enqueued), context.DeadlineExceeded)}
			take[i] = true
		}
		batch := make([]*entry[K, In, Out], 0, len(d.Batch))
		for _, i := range d.Batch {
			batch = append(batch, b.queue[i])
			take[i] = true
		}
		if len(take) > 0 {
			kept := b.queue[:0]
			for i, e := range b.queue {
				if !take[i] {
					kept = append(kept, e)
				}
			}
			clear(b.queue[len(kept):])
			b.queue = kept
		}
		if len(batch) == 0 {
			return d.WakeAt, false
		}
		b.running++
		b.inflight += len(batch)
		go b.run(batch, now)
	}
}

func (b *Batcher[K, In, Out]) run(batch []*entry[K, In, Out], start time.Time) {
	ctx, cancel := batchContext(batch)
	defer cancel()
	ins := make([]In, len(batch))
	for i, e := range batch {
		ins[i] = e.in
	}
	t0 := b.opt.now()
	outs, err := b.exec(ctx, batch[0].Key, ins)
	compute := b.opt.now().Sub(t0)
	if err == nil && len(outs) != len(ins) {
		err = fmt.Errorf("batcher: exec returned %d outputs for %d inputs", len(outs), len(ins))
	}
	for i, e := range batch {
		r := result[Out]{err: err, info: Info{Queue: start.Sub(e.Enqueued), Compute: compute, Batch: len(batch)}}
		if err == nil {
			r.out = outs[i]
		}
		e.done <- r
	}
	if b.opt.onBatch != nil {
		b.opt.onBatch(BatchStats{Size: len(batch), Compute: compute, Err: err})
	}
	b.mu.Lock()
	b.running--
	b.inflight -= len(batch)
	if err == nil {
		// Exponential moving average; the first batch sets it.
		if b.batchTime == 0 {
			b.batchTime = compute
		} else {
			b.batchTime = (3*b.batchTime + compute) / 4
		}
	}
	b.mu.Unlock()
	b.poke()
}

// batchContext is cancelled once every caller's context is done, and has
// the latest of their deadlines (none if any caller has none).
func batchContext[K comparable, In, Out any](batch []*entry[K, In, Out]) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	var latest time.Time
	for _, e := range batch {
		dl, ok := e.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if dl.After(latest) {
			latest = dl
		}
	}
	if !latest.IsZero() {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, latest)
		prev := cancel
		cancel = func() { c2(); prev() }
	}
	var mu sync.Mutex
	left := len(batch)
	stops := make([]func() bool, len(batch))
	for i, e := range batch {
		stops[i] = context.AfterFunc(e.ctx, func() {
			mu.Lock()
			left--
			last := left == 0
			mu.Unlock()
			if last {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, s := range stops {
			s()
		}
		cancel()
	}
}

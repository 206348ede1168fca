package batcher

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func double(_ context.Context, _ string, ins []int) ([]int, error) {
	out := make([]int, len(ins))
	for i, v := range ins {
		out[i] = 2 * v
	}
	time.Sleep(5 * time.Millisecond)
	return out, nil
}

func TestBatchesFormUnderLoad(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	b, err := New(Config{MaxBatch: 4, MaxDelay: 50 * time.Millisecond, MaxQueue: 64, Instances: 1}, double,
		OnBatch(func(s BatchStats) { mu.Lock(); sizes = append(sizes, s.Size); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			out, info, err := b.Submit(context.Background(), "k", i)
			if err != nil || out != 2*i || info.Batch < 1 || info.Batch > 4 {
				t.Errorf("Submit(%d) = %d, %+v, %v", i, out, info, err)
			}
		})
	}
	wg.Wait()
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total, full := 0, 0
	for _, s := range sizes {
		total += s
		if s == 4 {
			full++
		}
	}
	if total != 16 || full < 3 {
		t.Fatalf("batch sizes %v: want 16 requests in mostly full batches of 4", sizes)
	}
}

// blocker is an Exec that holds every batch until released, and records
// whether its context was cancelled.
type blocker struct {
	release   chan struct{}
	started   chan int
	cancelled atomic.Int32
	ran       atomic.Int32
}

func newBlocker() *blocker {
	return &blocker{release: make(chan struct{}), started: make(chan int, 100)}
}

func (bl *blocker) exec(ctx context.Context, _ string, ins []int) ([]int, error) {
	bl.ran.Add(int32(len(ins)))
	bl.started <- len(ins)
	select {
	case <-bl.release:
		return ins, nil
	case <-ctx.Done():
		bl.cancelled.Add(1)
		return nil, ctx.Err()
	}
}

func TestOverloadRejectsFastAndRecovers(t *testing.T) {
	bl := newBlocker()
	b, err := New(Config{MaxBatch: 1, MaxQueue: 2, Instances: 1}, bl.exec)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { _, _, err := b.Submit(context.Background(), "k", i); errs <- err }()
		if i == 0 {
			<-bl.started // the first runs; the next two fill the queue
		}
	}
	for b.Queued() < 2 {
		time.Sleep(time.Millisecond)
	}
	var worst time.Duration
	for range 100 {
		t0 := time.Now()
		_, _, err := b.Submit(context.Background(), "k", 9)
		worst = max(worst, time.Since(t0))
		var oe *OverloadError
		if !errors.As(err, &oe) || oe.RetryAfter <= 0 || oe.MaxQueue != 2 {
			t.Fatalf("Submit on a full queue: %v, want *OverloadError with RetryAfter", err)
		}
	}
	if worst > 5*time.Millisecond {
		t.Fatalf("slowest rejection took %v, want < 5ms", worst)
	}
	close(bl.release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.Submit(context.Background(), "k", 1); err != nil {
		t.Fatalf("after the queue cleared: %v", err)
	}
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCancellation(t *testing.T) {
	t.Run("queued request leaves the queue", func(t *testing.T) {
		bl := newBlocker()
		b := mustNew(t, Config{MaxBatch: 1, MaxQueue: 4, Instances: 1}, bl.exec)
		go func() { _, _, _ = b.Submit(context.Background(), "k", 1) }()
		<-bl.started
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { _, _, err := b.Submit(ctx, "k", 2); done <- err }()
		for b.Queued() < 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Submit: %v", err)
		}
		if q := b.Queued(); q != 0 {
			t.Fatalf("%d still queued", q)
		}
		close(bl.release)
		_ = b.Drain(context.Background())
		if n := bl.ran.Load(); n != 1 {
			t.Fatalf("exec ran %d inputs, want only the first", n)
		}
	})
	t.Run("running batch is cancelled when its caller leaves", func(t *testing.T) {
		bl := newBlocker()
		b := mustNew(t, Config{MaxBatch: 1, MaxQueue: 4, Instances: 1}, bl.exec)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { _, _, err := b.Submit(ctx, "k", 1); done <- err }()
		<-bl.started
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Submit: %v", err)
		}
		if err := b.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if bl.cancelled.Load() != 1 {
			t.Fatal("exec's context was not cancelled")
		}
	})
	t.Run("batch runs on while one caller remains", func(t *testing.T) {
		bl := newBlocker()
		b := mustNew(t, Config{MaxBatch: 2, MaxDelay: time.Second, MaxQueue: 4, Instances: 1}, bl.exec)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 2)
		go func() { _, _, err := b.Submit(ctx, "k", 1); done <- err }()
		go func() { _, _, err := b.Submit(context.Background(), "k", 2); done <- err }()
		if n := <-bl.started; n != 2 {
			t.Fatalf("batch of %d, want 2", n)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("first done: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
		if bl.cancelled.Load() != 0 {
			t.Fatal("batch cancelled while a caller still waits")
		}
		close(bl.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		_ = b.Drain(context.Background())
	})
	t.Run("deadline passes in the queue", func(t *testing.T) {
		bl := newBlocker()
		b := mustNew(t, Config{MaxBatch: 1, MaxQueue: 4, Instances: 1}, bl.exec)
		go func() { _, _, _ = b.Submit(context.Background(), "k", 1) }()
		<-bl.started
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, _, err := b.Submit(ctx, "k", 2)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Submit: %v, want DeadlineExceeded", err)
		}
		close(bl.release)
		_ = b.Drain(context.Background())
		if n := bl.ran.Load(); n != 1 {
			t.Fatalf("exec ran %d inputs, want 1", n)
		}
	})
}

func TestDrainFinishesQueuedWork(t *testing.T) {
	bl := newBlocker()
	b := mustNew(t, Config{MaxBatch: 2, MaxDelay: time.Minute, MaxQueue: 8, Instances: 1}, bl.exec)
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { _, _, err := b.Submit(context.Background(), "k", i); errs <- err }()
	}
	<-bl.started // the first full batch of 2
	for b.Queued() < 1 {
		time.Sleep(time.Millisecond)
	}
	drained := make(chan error)
	go func() { drained <- b.Drain(context.Background()) }()
	for {
		if errors.Is(b.Admit(), ErrClosed) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, _, err := b.Submit(context.Background(), "k", 9); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit while draining: %v, want ErrClosed", err)
	}
	close(bl.release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("queued request lost in drain: %v", err)
		}
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

func TestExecErrorsReachEveryCaller(t *testing.T) {
	boom := errors.New("boom")
	b := mustNew(t, Config{MaxBatch: 4, MaxDelay: 20 * time.Millisecond, MaxQueue: 8, Instances: 1},
		func(context.Context, string, []int) ([]int, error) { return nil, boom })
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if _, _, err := b.Submit(context.Background(), "k", i); !errors.Is(err, boom) {
				t.Errorf("Submit: %v", err)
			}
		})
	}
	wg.Wait()
	_ = b.Drain(context.Background())
}

func mustNew(t *testing.T, cfg Config, exec Exec[string, int, int]) *Batcher[string, int, int] {
	t.Helper()
	b, err := New(cfg, exec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package batcher

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	it := func(key string, enq int) Item[string] { return Item[string]{Key: key, Enqueued: ms(enq)} }
	itd := func(key string, enq, dl int) Item[string] {
		return Item[string]{Key: key, Enqueued: ms(enq), Deadline: ms(dl)}
	}
	cfg := Config{MaxBatch: 3, MaxDelay: 10 * time.Millisecond, MaxQueue: 100, Instances: 1}
	eager := Config{MaxBatch: 3, MaxDelay: 10 * time.Millisecond, MaxQueue: 100, Instances: 2, EagerBelow: 1}
	below := Config{MaxBatch: 3, MaxDelay: 10 * time.Millisecond, MaxQueue: 100, Instances: 2, EagerBelow: 2}
	for _, tc := range []struct {
		name     string
		cfg      Config
		queue    []Item[string]
		now      int
		free     int
		inflight int
		batch    []int
		expired  []int
		wake     int // -1: zero
	}{
		{name: "empty", cfg: cfg, now: 0, free: 1, wake: -1},
		{name: "one waits for delay", cfg: cfg, queue: []Item[string]{it("a", 0)}, now: 2, free: 1, wake: 10},
		{name: "one runs at delay", cfg: cfg, queue: []Item[string]{it("a", 0)}, now: 10, free: 1, batch: []int{0}},
		{name: "full batch runs at once", cfg: cfg, queue: []Item[string]{it("a", 0), it("a", 1), it("a", 2), it("a", 3)}, now: 3, free: 1, batch: []int{0, 1, 2}},
		{name: "keys do not mix", cfg: cfg, queue: []Item[string]{it("a", 0), it("b", 1), it("a", 2), it("a", 3)}, now: 3, free: 1, batch: []int{0, 2, 3}},
		{name: "partial batch of head key at delay", cfg: cfg, queue: []Item[string]{it("a", 0), it("b", 1), it("b", 2)}, now: 11, free: 1, batch: []int{0}},
		{name: "busy: nothing runs, no wake", cfg: cfg, queue: []Item[string]{it("a", 0), it("a", 1), it("a", 2)}, now: 20, free: 0, wake: -1},
		{name: "busy: wake for a deadline", cfg: cfg, queue: []Item[string]{it("a", 0), itd("a", 1, 50)}, now: 20, free: 0, wake: 50},
		{name: "expired leave", cfg: cfg, queue: []Item[string]{itd("a", 0, 5), it("a", 1), itd("a", 2, 6)}, now: 6, free: 1, expired: []int{0, 2}, wake: 11},
		{name: "all expired", cfg: cfg, queue: []Item[string]{itd("a", 0, 5)}, now: 5, free: 1, expired: []int{0}, wake: -1},
		{name: "deadline before delay wakes early", cfg: cfg, queue: []Item[string]{itd("a", 0, 4)}, now: 1, free: 1, wake: 4},
		{name: "no delay runs at once", cfg: Config{MaxBatch: 8, MaxQueue: 8, Instances: 1}, queue: []Item[string]{it("a", 0), it("a", 0)}, now: 0, free: 1, batch: []int{0, 1}},
		{name: "batching off", cfg: Config{MaxBatch: 1, MaxDelay: time.Second, MaxQueue: 8, Instances: 1}, queue: []Item[string]{it("a", 0), it("a", 0)}, now: 0, free: 1, batch: []int{0}},
		{name: "eager: all idle runs a partial batch at once", cfg: eager, queue: []Item[string]{it("a", 0), it("b", 0), it("a", 1)}, now: 1, free: 2, batch: []int{0, 2}},
		{name: "eager: one executor busy still waits", cfg: eager, queue: []Item[string]{it("a", 0), it("a", 1)}, now: 2, free: 1, inflight: 1, wake: 10},
		{name: "eager: busy executors, nothing runs", cfg: eager, queue: []Item[string]{it("a", 0)}, now: 20, free: 0, inflight: 2, wake: -1},
		{name: "eager below: an idle core runs a partial batch", cfg: below, queue: []Item[string]{it("a", 0), it("a", 1)}, now: 1, free: 1, inflight: 1, batch: []int{0, 1}},
		{name: "eager below: nothing running", cfg: below, queue: []Item[string]{it("a", 0)}, now: 0, free: 2, batch: []int{0}},
		{name: "eager below: cores busy, the batch fills", cfg: below, queue: []Item[string]{it("a", 0), it("a", 1)}, now: 2, free: 1, inflight: 2, wake: 10},
		{name: "eager below: no free executor", cfg: below, queue: []Item[string]{it("a", 0)}, now: 2, free: 0, inflight: 1, wake: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(tc.cfg, tc.queue, ms(tc.now), tc.free, tc.inflight)
			if !slices.Equal(d.Batch, tc.batch) || !slices.Equal(d.Expired, tc.expired) {
				t.Fatalf("Plan = batch %v expired %v, want %v %v", d.Batch, d.Expired, tc.batch, tc.expired)
			}
			want := time.Time{}
			if tc.wake >= 0 && tc.batch == nil {
				want = ms(tc.wake)
			}
			if tc.batch == nil && !d.WakeAt.Equal(want) {
				t.Fatalf("WakeAt = %v, want %v", d.WakeAt, want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		queued, batch, inst int
		bt                  time.Duration
		want                time.Duration
	}{
		{0, 8, 1, 0, 10 * time.Millisecond},
		{64, 8, 1, 0, 10 * time.Millisecond},
		{64, 8, 1, 100 * time.Millisecond, 800 * time.Millisecond},
		{65, 8, 1, 100 * time.Millisecond, 900 * time.Millisecond},
		{64, 8, 4, 100 * time.Millisecond, 200 * time.Millisecond},
		{1 << 20, 1, 1, time.Second, 30 * time.Second},
		{5, 0, 0, 10 * time.Millisecond, 50 * time.Millisecond},
	} {
		if got := RetryAfter(tc.queued, tc.batch, tc.inst, tc.bt); got != tc.want {
			t.Errorf("RetryAfter(%d, %d, %d, %v) = %v, want %v", tc.queued, tc.batch, tc.inst, tc.bt, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{MaxBatch: 8, MaxDelay: time.Millisecond, MaxQueue: 64, Instances: 1}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"batch", func(c *Config) { c.MaxBatch = 0 }, "MaxBatch"},
		{"delay", func(c *Config) { c.MaxDelay = -1 }, "MaxDelay"},
		{"queue", func(c *Config) { c.MaxQueue = 0 }, "MaxQueue"},
		{"instances", func(c *Config) { c.Instances = 0 }, "Instances"},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
}

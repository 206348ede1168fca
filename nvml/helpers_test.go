package nvml_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"babelfish.dev/babelfish/nvml"
)

// clock is a hand-moved clock shared by a fake machine and an agent.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rig is a fake machine with an agent on it.
type rig struct {
	clk   *clock
	fake  *nvml.Fake
	agent *nvml.Agent
}

type rigOption func(*nvml.Config)

func newRig(t *testing.T, kind string, opts ...rigOption) *rig {
	t.Helper()
	clk := newClock()
	fake, err := nvml.NewFake(kind, nvml.WithFakeClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	cfg := nvml.Config{
		NVML:          fake.Interface(),
		Hostname:      "node-a",
		Interval:      20 * time.Millisecond,
		RecoveryQuiet: time.Minute,
		Logger:        quietLogger(),
		Now:           clk.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := nvml.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	return &rig{clk: clk, fake: fake, agent: a}
}

// run starts the agent's loops until the test ends, and waits until its
// event set is registered (injections fail before).
func (r *rig) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.agent.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the agent to watch events", func() bool {
		for i := range r.fake.Count() {
			if !r.fake.Watched(i) {
				return false
			}
		}
		return true
	})
}

// inject retries an injection until the agent listens for events.
func inject(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("inject: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventuallyState is eventually for a condition that says what it saw.
func eventuallyState(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metrics gathers c through a registry, which also checks the collector's
// consistency (label names, duplicate series).
type metrics map[string]*dto.MetricFamily

func gather(t *testing.T, cs ...prometheus.Collector) metrics {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		reg.MustRegister(c)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	m := metrics{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

// series returns the series of name whose labels include want.
func (m metrics) series(name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	f, ok := m[name]
	if !ok {
		return nil
	}
next:
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// value returns the one value of name with labels want.
func (m metrics) value(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	ss := m.series(name, want)
	if len(ss) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(ss))
	}
	s := ss[0]
	switch {
	case s.GetGauge() != nil:
		return s.GetGauge().GetValue()
	case s.GetCounter() != nil:
		return s.GetCounter().GetValue()
	}
	t.Fatalf("%s%v: neither gauge nor counter", name, want)
	return 0
}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func gpuByIndex(t *testing.T, a *nvml.Agent, i int) nvml.GPUStatus {
	t.Helper()
	for _, g := range a.GPUs() {
		if g.Index == i {
			return g
		}
	}
	t.Fatalf("no gpu %d", i)
	return nvml.GPUStatus{}
}

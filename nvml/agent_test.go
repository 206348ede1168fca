package nvml_test

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"babelfish.dev/babelfish/nvml"
)

// TestMetricValuesAndLabels checks every exported measurement against what
// the fake GPU reports at the same instant, in dcgm-exporter's units, with
// dcgm-exporter's labels.
func TestMetricValuesAndLabels(t *testing.T) {
	for _, c := range []struct {
		kind, model string
		memMiB      float64
		links       float64
	}{
		{"dgxa100", "Mock NVIDIA A100-SXM4-40GB", 40960, 12},
		{"dgxh100", "NVIDIA H100 80GB HBM3", 81920, 18},
	} {
		t.Run(c.kind, func(t *testing.T) {
			r := newRig(t, c.kind)
			r.clk.Add(37 * time.Second)
			r.agent.Sample(t.Context())
			m := gather(t, r.agent.Collector())
			const mib = 1 << 20
			for i := range r.fake.Count() {
				rd, err := r.fake.Reading(i, r.clk.Now())
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]float64{
					"DCGM_FI_DEV_GPU_UTIL":                    float64(rd.UtilGPU),
					"DCGM_FI_DEV_MEM_COPY_UTIL":               float64(rd.UtilMemory),
					"DCGM_FI_DEV_FB_TOTAL":                    c.memMiB,
					"DCGM_FI_DEV_FB_USED":                     float64(rd.UsedBytes / mib),
					"DCGM_FI_DEV_FB_FREE":                     float64(rd.FreeBytes / mib),
					"DCGM_FI_DEV_FB_RESERVED":                 float64(rd.ReservedBytes / mib),
					"DCGM_FI_DEV_GPU_TEMP":                    float64(rd.TempC),
					"DCGM_FI_DEV_POWER_USAGE":                 float64(rd.PowerMW) / 1000,
					"DCGM_FI_DEV_POWER_MGMT_LIMIT":            float64(rd.PowerLimitMW) / 1000,
					"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION":    float64(rd.EnergyMJ),
					"DCGM_FI_DEV_SM_CLOCK":                    float64(rd.SMClockMHz),
					"DCGM_FI_DEV_MEM_CLOCK":                   float64(rd.MemClockMHz),
					"DCGM_FI_DEV_PCIE_REPLAY_COUNTER":         float64(rd.PCIeReplays),
					"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL":           0,
					"DCGM_FI_DEV_ECC_SBE_AGG_TOTAL":           2,
					"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": 0,
					"babelfish_gpu_nvlinks":                   c.links,
					"babelfish_gpu_nvlinks_active":            c.links,
					"babelfish_gpu_compute_processes":         1,
					"babelfish_gpu_healthy":                   1,
					"babelfish_gpu_lost":                      0,
					"babelfish_gpu_nvlink_island":             0,
				}
				idx := strconv.Itoa(i)
				sel := labels("gpu", idx, "UUID", r.fake.UUID(i), "modelName", c.model, "Hostname", "node-a",
					"device", "nvidia"+idx, "pod", "", "namespace", "", "container", "")
				for name, v := range want {
					if got := m.value(t, name, sel); got != v {
						t.Errorf("gpu %d %s = %v, want %v", i, name, got, v)
					}
				}
				if rd.UtilGPU < 10 || rd.UtilGPU > 90 || rd.TempC < 30 || rd.TempC > 70 || rd.PowerMW > rd.PowerLimitMW {
					t.Errorf("gpu %d implausible reading %+v", i, rd)
				}
			}
			// No XID yet: the last-XID gauge is absent, not 0.
			if s := m.series("DCGM_FI_DEV_XID_ERRORS", nil); len(s) != 0 {
				t.Errorf("DCGM_FI_DEV_XID_ERRORS before any XID: %d series, want none", len(s))
			}
		})
	}
}

// TestValuesMoveWithTime: utilization changes, and energy grows by the
// integral of the power readings.
func TestValuesMoveWithTime(t *testing.T) {
	r := newRig(t, "dgxa100")
	n := r.fake.Count()
	first := gather(t, r.agent.Collector())
	prev := first
	integral := make([]float64, n) // mJ, trapezoids of the power readings
	const steps, dt = 20, time.Second
	for range steps {
		r.clk.Add(dt)
		r.agent.Sample(t.Context())
		cur := gather(t, r.agent.Collector())
		for i := range n {
			sel := labels("gpu", strconv.Itoa(i))
			p0 := prev.value(t, "DCGM_FI_DEV_POWER_USAGE", sel)
			p1 := cur.value(t, "DCGM_FI_DEV_POWER_USAGE", sel)
			integral[i] += (p0 + p1) / 2 * dt.Seconds() * 1000
		}
		prev = cur
	}
	utilMoved := 0
	for i := range n {
		sel := labels("gpu", strconv.Itoa(i))
		if first.value(t, "DCGM_FI_DEV_GPU_UTIL", sel) != prev.value(t, "DCGM_FI_DEV_GPU_UTIL", sel) {
			utilMoved++
		}
		grew := prev.value(t, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", sel) - first.value(t, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", sel)
		if grew <= 0 || math.Abs(grew-integral[i])/integral[i] > 0.01 {
			t.Errorf("gpu %d energy grew %.0f mJ in %v; the power readings integrate to %.0f", i, grew, steps*dt, integral[i])
		}
	}
	if utilMoved < n/2 {
		t.Errorf("utilization moved on %d of %d GPUs in %v", utilMoved, n, steps*dt)
	}
}

// TestNotSupportedIsOmitted: a value NVML does not support is absent, never
// a sentinel, and is not counted as an error.
func TestNotSupportedIsOmitted(t *testing.T) {
	r := newRig(t, "dgxh100")
	r.fake.SetUnsupported("GetPowerUsage", true)
	r.fake.SetUnsupported("GetTotalEccErrors", true)
	r.fake.SetUnsupported("GetMemoryInfo_v2", true) // old driver: v1 fallback
	r.agent.Sample(t.Context())
	m := gather(t, r.agent.Collector())
	for _, name := range []string{"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_FB_RESERVED"} {
		if s := m.series(name, nil); len(s) != 0 {
			t.Errorf("%s: %d series, want none (not supported)", name, len(s))
		}
	}
	for _, name := range []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_TOTAL"} {
		if s := m.series(name, nil); len(s) != r.fake.Count() {
			t.Errorf("%s: %d series, want %d", name, len(s), r.fake.Count())
		}
	}
	// v1's used includes the driver's reservation.
	rd, _ := r.fake.Reading(0, r.clk.Now())
	if got, want := m.value(t, "DCGM_FI_DEV_FB_USED", labels("gpu", "0")), float64((rd.UsedBytes+rd.ReservedBytes)>>20); got != want {
		t.Errorf("v1 FB_USED = %v, want %v", got, want)
	}
	if s := m.series("babelfish_gpu_agent_nvml_errors_total", nil); len(s) != 0 {
		t.Errorf("not-supported counted as %d errors", len(s))
	}
	r.fake.SetUnsupported("GetPowerUsage", false)
	r.agent.Sample(t.Context())
	if s := gather(t, r.agent.Collector()).series("DCGM_FI_DEV_POWER_USAGE", nil); len(s) != r.fake.Count() {
		t.Errorf("power after support returns: %d series", len(s))
	}
}

// TestHealth drives the fault paths end to end through the event set and
// the sampler, with the recovery probe on a hand-moved clock.
func TestHealth(t *testing.T) {
	type step struct {
		do          func(r *rig) error
		advance     time.Duration
		wantHealthy bool
		wantReason  string // substring; "" means healthy
		wantLost    bool
	}
	cases := []struct {
		name    string
		ignored []uint64
		gpu     int
		steps   []step
		// checks after the last step
		wantXIDs map[uint64]uint64
	}{
		{
			name: "critical xid recovers after the quiet period",
			gpu:  3,
			steps: []step{
				{do: func(r *rig) error { return r.fake.InjectXID(3, 79) }, wantReason: "xid 79 (GPU has fallen off the bus)"},
				{advance: 30 * time.Second, wantReason: "xid 79"},
				{do: func(r *rig) error { return r.fake.InjectXID(3, 94) }, wantReason: "xid 94"},
				{advance: 45 * time.Second, wantReason: "xid 94"}, // quiet restarted at the second XID
				{advance: 20 * time.Second, wantHealthy: true},
			},
			wantXIDs: map[uint64]uint64{79: 1, 94: 1},
		},
		{
			name: "application xid is counted and ignored",
			gpu:  1,
			steps: []step{
				{do: func(r *rig) error { return r.fake.InjectXID(1, 13) }, wantHealthy: true},
				{do: func(r *rig) error { return r.fake.InjectXID(1, 13) }, wantHealthy: true},
				{do: func(r *rig) error { return r.fake.InjectXID(1, 31) }, wantHealthy: true},
			},
			wantXIDs: map[uint64]uint64{13: 2, 31: 1},
		},
		{
			name:    "custom ignore list",
			ignored: []uint64{79},
			gpu:     0,
			steps: []step{
				{do: func(r *rig) error { return r.fake.InjectXID(0, 79) }, wantHealthy: true},
				{do: func(r *rig) error { return r.fake.InjectXID(0, 13) }, wantReason: "xid 13"},
			},
			wantXIDs: map[uint64]uint64{79: 1, 13: 1},
		},
		{
			name: "double-bit ecc needs a reset",
			gpu:  2,
			steps: []step{
				{do: func(r *rig) error { return r.fake.InjectDBE(2) }, wantReason: "double-bit ECC error"},
				{advance: 2 * time.Minute, wantReason: "row remap pending"},
				{do: func(r *rig) error { return r.fake.ResetGPU(2) }, wantHealthy: true},
			},
		},
		{
			name: "lost gpu",
			gpu:  5,
			steps: []step{
				{do: func(r *rig) error { return r.fake.LoseGPU(5) }, wantReason: "gpu lost", wantLost: true},
				{advance: 10 * time.Minute, wantReason: "gpu lost", wantLost: true},
				{do: func(r *rig) error { return r.fake.ResetGPU(5) }, wantReason: "gpu lost"}, // answers, not yet quiet
				{advance: 61 * time.Second, wantHealthy: true},
			},
			wantXIDs: map[uint64]uint64{79: 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, "dgxa100", func(cfg *nvml.Config) { cfg.IgnoredXIDs = c.ignored })
			r.run(t)
			for n, s := range c.steps {
				if s.do != nil {
					inject(t, func() error { return s.do(r) })
				}
				r.clk.Add(s.advance)
				// let the agent see the new time before the next step
				eventually(t, "a sample at the new time", func() bool { return !r.agent.LastSample().Before(r.clk.Now()) })
				desc := func() string {
					g := gpuByIndex(t, r.agent, c.gpu)
					return "healthy=" + strconv.FormatBool(g.Healthy) + " lost=" + strconv.FormatBool(g.Lost) + " reason=" + g.Reason
				}
				eventuallyState(t, "step "+strconv.Itoa(n), func() (bool, string) {
					g := gpuByIndex(t, r.agent, c.gpu)
					if g.Healthy != s.wantHealthy || g.Lost != s.wantLost {
						return false, desc()
					}
					return s.wantHealthy && g.Reason == "" || !s.wantHealthy && strings.Contains(g.Reason, s.wantReason), desc()
				})
				t.Logf("step %d: %s", n, desc())
				// Only the faulty GPU is affected.
				for _, g := range r.agent.GPUs() {
					if g.Index != c.gpu && !g.Healthy {
						t.Fatalf("step %d: gpu %d unhealthy (%s) too", n, g.Index, g.Reason)
					}
				}
			}
			eventuallyState(t, "xid counts", func() (bool, string) {
				g := gpuByIndex(t, r.agent, c.gpu)
				return maps.Equal(g.XIDs, c.wantXIDs) || len(c.wantXIDs) == 0, fmt.Sprint(g.XIDs)
			})
			g := gpuByIndex(t, r.agent, c.gpu)
			m := gather(t, r.agent.Collector())
			sel := labels("gpu", strconv.Itoa(c.gpu))
			for xid, n := range c.wantXIDs {
				xsel := labels("gpu", strconv.Itoa(c.gpu), "xid", strconv.FormatUint(xid, 10))
				if got := m.value(t, "babelfish_gpu_xid_errors_total", xsel); got != float64(n) {
					t.Errorf("xid %d counted %v times, want %d", xid, got, n)
				}
				if g.XIDs[xid] != n {
					t.Errorf("status xid %d = %d, want %d", xid, g.XIDs[xid], n)
				}
			}
			if len(c.wantXIDs) > 0 {
				if got := m.value(t, "DCGM_FI_DEV_XID_ERRORS", sel); got != float64(g.LastXID) || got == 0 {
					t.Errorf("DCGM_FI_DEV_XID_ERRORS = %v, want the last xid %d", got, g.LastXID)
				}
			}
			if last := c.steps[len(c.steps)-1]; last.wantHealthy && c.steps[0].wantReason != "" {
				if got := m.value(t, "babelfish_gpu_recoveries_total", sel); got != 1 {
					t.Errorf("recoveries = %v, want 1", got)
				}
				if got := m.value(t, "babelfish_gpu_unhealthy_transitions_total", sel); got != 1 {
					t.Errorf("unhealthy transitions = %v, want 1", got)
				}
			}
		})
	}
}

// TestLostGPUMetrics: while lost, a GPU's measurements vanish (no stale or
// zero values), health says why, and the inventory has no free memory.
func TestLostGPUMetrics(t *testing.T) {
	r := newRig(t, "dgxa100")
	if err := r.fake.LoseGPU(6); err != nil {
		t.Fatal(err)
	}
	r.agent.Sample(t.Context())
	m := gather(t, r.agent.Collector())
	lost := labels("gpu", "6")
	if s := m.series("DCGM_FI_DEV_GPU_UTIL", lost); len(s) != 0 {
		t.Errorf("lost gpu still has %d utilization series", len(s))
	}
	if s := m.series("DCGM_FI_DEV_GPU_UTIL", nil); len(s) != 7 {
		t.Errorf("utilization series %d, want 7", len(s))
	}
	if got := m.value(t, "babelfish_gpu_lost", lost); got != 1 {
		t.Errorf("babelfish_gpu_lost = %v", got)
	}
	if got := m.value(t, "babelfish_gpu_healthy", lost); got != 0 {
		t.Errorf("babelfish_gpu_healthy = %v", got)
	}
	inv := r.agent.Inventory()
	if g := inv.GPUs[6]; g.Healthy || g.FreeMiB != nil || g.Reason != "gpu lost" || g.Since == nil {
		t.Errorf("inventory of the lost gpu: %+v", g)
	}
	// It also leaves its NVLink island.
	if g := inv.GPUs[6]; g.Island == inv.GPUs[0].Island {
		t.Errorf("lost gpu in island %d with the others", g.Island)
	}
}

func TestIslands(t *testing.T) {
	r := newRig(t, "dgxh100")
	if err := r.fake.SetNvLinkDown(2, true); err != nil {
		t.Fatal(err)
	}
	r.clk.Add(nvml.DefaultTopologyInterval)
	r.agent.Sample(t.Context())
	want := []int{0, 0, 1, 0, 0, 0, 0, 0}
	for i, g := range r.agent.Inventory().GPUs {
		if g.Island != want[i] {
			t.Errorf("gpu %d island %d, want %d", i, g.Island, want[i])
		}
	}
	m := gather(t, r.agent.Collector())
	if got := m.value(t, "babelfish_gpu_nvlinks_active", labels("gpu", "2")); got != 0 {
		t.Errorf("gpu 2 active links %v, want 0", got)
	}
	if got := m.value(t, "babelfish_gpu_nvlink_island", labels("gpu", "2")); got != 1 {
		t.Errorf("gpu 2 island metric %v, want 1", got)
	}
}

// TestNoGPU: without NVML or without GPUs the agent fails clearly; it never
// falls back to fakes.
func TestNoGPU(t *testing.T) {
	cases := []struct {
		name  string
		lib   func() gonvml.Interface
		isErr error
		text  string
	}{
		{
			name: "no driver",
			lib: func() gonvml.Interface {
				return &mock.Interface{InitFunc: func() gonvml.Return { return gonvml.ERROR_LIBRARY_NOT_FOUND }}
			},
			isErr: nvml.ErrNoNVML, text: "ERROR_LIBRARY_NOT_FOUND",
		},
		{
			name: "no gpus",
			lib: func() gonvml.Interface {
				return &mock.Interface{
					InitFunc:           func() gonvml.Return { return gonvml.SUCCESS },
					ShutdownFunc:       func() gonvml.Return { return gonvml.SUCCESS },
					DeviceGetCountFunc: func() (int, gonvml.Return) { return 0, gonvml.SUCCESS },
				}
			},
			isErr: nvml.ErrNoGPUs, text: "no GPUs",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := nvml.New(t.Context(), nvml.Config{NVML: c.lib(), Hostname: "h", Logger: quietLogger()})
			if !errors.Is(err, c.isErr) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.isErr, c.text)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	fake, err := nvml.NewFake("dgxa100")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  nvml.Config
		want string
	}{
		{"no nvml", nvml.Config{Hostname: "h"}, "nvml: required"},
		{"interval too short", nvml.Config{NVML: fake.Interface(), Hostname: "h", Interval: time.Millisecond}, "interval 1ms: must be in 10ms..1h0m0s"},
		{"negative quiet", nvml.Config{NVML: fake.Interface(), Hostname: "h", RecoveryQuiet: -time.Second}, "recovery quiet -1s"},
		{"no names", nvml.Config{NVML: fake.Interface()}, "node name and hostname"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := nvml.New(t.Context(), c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	if _, err := nvml.NewFake("dgx1"); err == nil || !strings.Contains(err.Error(), "dgxa100") {
		t.Errorf("unknown fake kind: %v", err)
	}
}

// TestFakeInjectionNeedsListener: injecting into an agent that does not
// listen is an error, so a test cannot pass by injecting into the void.
func TestFakeInjectionNeedsListener(t *testing.T) {
	fake, err := nvml.NewFake("dgxa100")
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.InjectXID(0, 79); err == nil {
		t.Fatal("InjectXID with no event set registered: want an error")
	}
	if err := fake.InjectXID(8, 79); err == nil || !strings.Contains(err.Error(), "0..7") {
		t.Fatalf("InjectXID on gpu 8: %v", err)
	}
}

// The slow queries (energy counter, power limit, PCIe replays) are made
// every SlowInterval; samples in between carry their last values while the
// rest moves on.
func TestSlowQueriesCarryBetweenReads(t *testing.T) {
	r := newRig(t, "dgxh100", func(c *nvml.Config) { c.SlowInterval = 5 * time.Second })
	sel := labels("gpu", "0")
	t0 := r.clk.Now()
	energyAt := func(at time.Time) float64 {
		rd, err := r.fake.Reading(0, at)
		if err != nil {
			t.Fatal(err)
		}
		return float64(rd.EnergyMJ)
	}
	for step := 1; step <= 10; step++ {
		r.clk.Add(time.Second)
		r.agent.Sample(t.Context())
		m := gather(t, r.agent.Collector())
		// Reads happen at 0 s (New) and then once 5 s have passed.
		readAt := t0.Add(time.Duration(step/5*5) * time.Second)
		if got, want := m.value(t, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", sel), energyAt(readAt); got != want {
			t.Fatalf("after %d s: energy %v mJ, want the reading at %v (%v mJ)", step, got, readAt.Sub(t0), want)
		}
		rd, _ := r.fake.Reading(0, r.clk.Now())
		if got, want := m.value(t, "DCGM_FI_DEV_POWER_USAGE", sel), float64(rd.PowerMW)/1000; got != want {
			t.Fatalf("after %d s: power %v W, want this sample's %v", step, got, want)
		}
		for _, name := range []string{"DCGM_FI_DEV_POWER_MGMT_LIMIT", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"} {
			m.value(t, name, sel) // present in every sample, carried or read
		}
	}
}

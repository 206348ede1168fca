package nvml

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"babelfish.dev/babelfish/nvml/inventory"
)

// Defaults and limits of Config.
const (
	DefaultInterval         = time.Second
	DefaultRecoveryQuiet    = 5 * time.Minute
	DefaultTopologyInterval = 30 * time.Second
	DefaultSlowInterval     = 10 * time.Second
	MinInterval             = 10 * time.Millisecond
	MaxInterval             = time.Hour
	// eventWait is how long one wait on the NVML event set blocks, so the
	// watcher notices a cancelled context within it.
	eventWait = 500 * time.Millisecond
	// podListTimeout bounds one pod-resources call.
	podListTimeout = 2 * time.Second
)

// ErrNoNVML means NVML could not be loaded or initialised: no NVIDIA driver
// here. ErrNoGPUs means NVML works but sees no GPU. The agent never falls
// back to fake GPUs by itself.
var (
	ErrNoNVML = errors.New("NVML is not available")
	ErrNoGPUs = errors.New("NVML sees no GPUs")
)

// DefaultIgnoredXIDs are the XIDs that NVIDIA's k8s-device-plugin treats as
// application errors, not GPU faults: they are counted but leave the GPU
// healthy.
func DefaultIgnoredXIDs() []uint64 { return []uint64{13, 31, 43, 45, 68, 109} }

// Config configures an Agent.
type Config struct {
	// NVML is the library: gonvml.New() on a GPU machine, Fake.Interface()
	// otherwise. Required.
	NVML gonvml.Interface
	// Hostname is the Hostname label of every metric.
	Hostname string
	// NodeName is the Node the inventory describes; Hostname when empty.
	NodeName string
	// Interval between samples (DefaultInterval when 0), in
	// MinInterval..MaxInterval.
	Interval time.Duration
	// IgnoredXIDs are counted but do not make a GPU unhealthy; nil means
	// DefaultIgnoredXIDs, an empty non-nil list ignores none.
	IgnoredXIDs []uint64
	// RecoveryQuiet is how long an unhealthy GPU must go without a new fault
	// before the recovery probe may mark it healthy (DefaultRecoveryQuiet
	// when 0).
	RecoveryQuiet time.Duration
	// TopologyInterval is how often NVLink islands are recomputed
	// (DefaultTopologyInterval when 0).
	TopologyInterval time.Duration
	// SlowInterval is how often the queries NVML answers slowly are made
	// (the energy counter, the power limit, PCIe replays; DefaultSlowInterval
	// when 0); samples in between carry their last values. On an H100 the
	// energy counter alone took 2.9 ms a call, 90% of a sample.
	SlowInterval time.Duration
	// PodLister attributes GPUs to pods; nil leaves the pod labels empty.
	PodLister PodLister
	Logger    *slog.Logger
	// Now is the clock of health timestamps and the inventory (time.Now
	// when nil).
	Now func() time.Time
}

// Agent samples every GPU at an interval, keeps the latest sample for
// /metrics (so a scrape costs no NVML call and any number of scrapers cost
// the GPUs nothing), watches NVML events for faults, and builds the node's
// inventory.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	lib     gonvml.Interface
	driver  string
	gpus    []*gpu
	ignored map[uint64]bool

	sampleMu sync.Mutex // one sample at a time

	mu        sync.Mutex // guards what follows
	health    []healthState
	islands   []int
	islandsAt time.Time
	slowAt    time.Time // when the slow queries were last made
	pods      map[string][]PodRef
	podErrs   uint64
	podErrMsg string
	nvmlErrs  map[string]uint64
	samples   []sample

	snap    atomic.Pointer[snapshot]
	updates chan struct{}
	kick    chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// gpu is what does not change while the agent runs.
type gpu struct {
	index  int
	dev    gonvml.Device
	uuid   string
	model  string
	busID  string
	family string
	memMiB int64
}

type healthState struct {
	healthy bool
	lost    bool
	reason  string
	since   time.Time // when it became unhealthy
	lastBad time.Time // the latest fault; recovery counts quiet from here
	xids    map[uint64]uint64
	lastXID uint64
	anyXID  bool

	unhealthyTotal uint64
	recoveries     uint64
}

// GPUStatus is one GPU as the latest sample saw it.
type GPUStatus struct {
	Index     int
	UUID      string
	Model     string
	Family    string
	PCIBusID  string
	MemoryMiB int64
	// FreeMiB is nil when it could not be read (a lost GPU).
	FreeMiB *int64
	Healthy bool
	Lost    bool
	Reason  string
	Since   time.Time
	Island  int
	// XIDs counts every XID seen since the agent started, by code.
	XIDs       map[uint64]uint64
	LastXID    uint64
	Recoveries uint64
	Pods       []PodRef
}

type snapshot struct {
	at       time.Time
	took     time.Duration
	gpus     []GPUStatus
	samples  []sample
	health   []healthState // counters only
	nvmlErrs map[string]uint64
	podErrs  uint64
	inv      *inventory.Inventory
}

// New initialises NVML, finds the GPUs and takes a first sample. Close
// shuts NVML down.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.NVML == nil {
		return nil, fmt.Errorf("gpu agent config nvml: required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < MinInterval || cfg.Interval > MaxInterval {
		return nil, fmt.Errorf("gpu agent config interval %v: must be in %v..%v", cfg.Interval, MinInterval, MaxInterval)
	}
	if cfg.RecoveryQuiet == 0 {
		cfg.RecoveryQuiet = DefaultRecoveryQuiet
	}
	if cfg.RecoveryQuiet < 0 {
		return nil, fmt.Errorf("gpu agent config recovery quiet %v: must be >= 0", cfg.RecoveryQuiet)
	}
	if cfg.TopologyInterval == 0 {
		cfg.TopologyInterval = DefaultTopologyInterval
	}
	if cfg.TopologyInterval < 0 {
		return nil, fmt.Errorf("gpu agent config topology interval %v: must be >= 0", cfg.TopologyInterval)
	}
	if cfg.SlowInterval == 0 {
		cfg.SlowInterval = DefaultSlowInterval
	}
	if cfg.SlowInterval < 0 {
		return nil, fmt.Errorf("gpu agent config slow interval %v: must be >= 0", cfg.SlowInterval)
	}
	if cfg.IgnoredXIDs == nil {
		cfg.IgnoredXIDs = DefaultIgnoredXIDs()
	}
	if cfg.NodeName == "" {
		cfg.NodeName = cfg.Hostname
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("gpu agent config node name and hostname: one is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Agent{
		cfg:      cfg,
		log:      cfg.Logger,
		lib:      cfg.NVML,
		ignored:  map[uint64]bool{},
		nvmlErrs: map[string]uint64{},
		updates:  make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
	}
	for _, x := range cfg.IgnoredXIDs {
		a.ignored[x] = true
	}
	if ret := a.lib.Init(); ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("%w: nvml init: %v (is the NVIDIA driver installed and libnvidia-ml.so.1 loadable?)", ErrNoNVML, ret)
	}
	if err := a.discover(); err != nil {
		a.lib.Shutdown()
		return nil, err
	}
	a.Sample(ctx)
	return a, nil
}

func (a *Agent) discover() error {
	n, ret := a.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml device count: %v", ret)
	}
	if n == 0 {
		return ErrNoGPUs
	}
	if n > inventory.MaxGPUs {
		return fmt.Errorf("nvml device count %d: at most %d are supported", n, inventory.MaxGPUs)
	}
	if v, ret := a.lib.SystemGetDriverVersion(); ret == gonvml.SUCCESS {
		a.driver = v
	}
	for i := range n {
		dev, ret := a.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			return fmt.Errorf("nvml device %d handle: %v", i, ret)
		}
		g := &gpu{index: i, dev: dev}
		if g.uuid, ret = dev.GetUUID(); ret != gonvml.SUCCESS {
			return fmt.Errorf("nvml device %d uuid: %v", i, ret)
		}
		if g.model, ret = dev.GetName(); ret != gonvml.SUCCESS {
			return fmt.Errorf("nvml device %d name: %v", i, ret)
		}
		if p, ret := dev.GetPciInfo(); ret == gonvml.SUCCESS {
			g.busID = busID(p)
		}
		if arch, ret := dev.GetArchitecture(); ret == gonvml.SUCCESS {
			g.family = family(arch)
		}
		if m, ret := dev.GetMemoryInfo_v2(); ret == gonvml.SUCCESS {
			g.memMiB = int64(toMiB(m.Total))
		} else if m, ret := dev.GetMemoryInfo(); ret == gonvml.SUCCESS {
			g.memMiB = int64(toMiB(m.Total))
		} else {
			return fmt.Errorf("nvml device %d memory: %v", i, ret)
		}
		a.gpus = append(a.gpus, g)
	}
	a.health = make([]healthState, n)
	for i := range a.health {
		a.health[i] = healthState{healthy: true, xids: map[uint64]uint64{}}
	}
	a.log.Info("gpus found", "count", n, "model", a.gpus[0].model, "driver", a.driver)
	return nil
}

// Close shuts NVML down. Run must have returned.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		if ret := a.lib.Shutdown(); ret != gonvml.SUCCESS {
			a.closeErr = fmt.Errorf("nvml shutdown: %v", ret)
		}
	})
	return a.closeErr
}

// Run samples every Interval and watches NVML events until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.watchEvents(ctx) })
	defer wg.Wait()
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.kick:
		}
		a.Sample(ctx)
	}
}

// Updates receives after each sample (at most one pending), for the
// inventory publisher.
func (a *Agent) Updates() <-chan struct{} { return a.updates }

// Sample reads every GPU now, runs due recovery probes and replaces what
// /metrics and Inventory report. Run calls it every Interval.
func (a *Agent) Sample(ctx context.Context) {
	a.sampleMu.Lock()
	defer a.sampleMu.Unlock()
	began := time.Now()

	if a.cfg.PodLister != nil {
		pctx, cancel := context.WithTimeout(ctx, min(podListTimeout, max(a.cfg.Interval, 100*time.Millisecond)))
		pods, err := a.cfg.PodLister.GPUPods(pctx)
		cancel()
		a.mu.Lock()
		if err != nil {
			// Keep the last answer: a kubelet restart should not strip the
			// pod labels for a scrape or two.
			a.podErrs++
			if msg := err.Error(); msg != a.podErrMsg {
				a.log.Warn("pod attribution failed; keeping the last answer", "err", err)
				a.podErrMsg = msg
			}
		} else {
			a.pods, a.podErrMsg = pods, ""
		}
		a.mu.Unlock()
	}

	// a.samples and a.slowAt change only here, under sampleMu.
	slow := a.samples == nil || a.cfg.Now().Sub(a.slowAt) >= a.cfg.SlowInterval
	samples := make([]sample, len(a.gpus))
	for i, g := range a.gpus {
		// A GPU that was lost last time has nothing to carry: read it all.
		var prev *sample
		if !slow && !a.samples[i].lost {
			prev = &a.samples[i]
		}
		samples[i] = readDevice(g.dev, a.countErr, prev)
	}

	now := a.cfg.Now()
	if slow {
		a.slowAt = now
	}
	a.probeRecoveries(now, samples)

	a.mu.Lock()
	lostChanged := false
	for i := range a.gpus {
		if samples[i].lost != a.health[i].lost {
			lostChanged = true
		}
	}
	if a.islands == nil || lostChanged || now.Sub(a.islandsAt) >= a.cfg.TopologyInterval {
		devs := make([]gonvml.Device, len(a.gpus))
		for i, g := range a.gpus {
			devs[i] = g.dev
		}
		a.mu.Unlock()
		isl := islands(devs)
		a.mu.Lock()
		a.islands, a.islandsAt = isl, now
	}
	for i, s := range samples {
		h := &a.health[i]
		switch {
		case s.lost:
			if !h.lost {
				a.log.Error("gpu lost", "gpu", i, "uuid", a.gpus[i].uuid)
			}
			h.lost = true
			a.markUnhealthyLocked(i, "gpu lost", now)
		case h.lost:
			h.lost = false
			a.log.Info("lost gpu answers again; recovery probe after the quiet period", "gpu", i, "uuid", a.gpus[i].uuid, "quiet", a.cfg.RecoveryQuiet)
		}
	}
	a.samples = samples
	snap := a.buildSnapshotLocked(now, time.Since(began))
	a.mu.Unlock()

	a.snap.Store(snap)
	select {
	case a.updates <- struct{}{}:
	default:
	}
}

func (a *Agent) countErr(fn string) {
	a.mu.Lock()
	a.nvmlErrs[fn]++
	a.mu.Unlock()
}

// markUnhealthyLocked records a fault on GPU i.
func (a *Agent) markUnhealthyLocked(i int, reason string, now time.Time) {
	h := &a.health[i]
	h.lastBad = now
	if h.healthy {
		h.healthy = false
		h.since = now
		h.unhealthyTotal++
		a.log.Warn("gpu unhealthy", "gpu", i, "uuid", a.gpus[i].uuid, "reason", reason)
	}
	h.reason = reason
}

// probeRecoveries checks every unhealthy GPU that has been quiet for
// RecoveryQuiet and that answered this sample: if it still answers as
// itself, its memory and temperature read, and no row remap waits for a
// reset, it is healthy again. The probe's NVML calls run without the lock.
func (a *Agent) probeRecoveries(now time.Time, samples []sample) {
	type cand struct {
		i       int
		lastBad time.Time
	}
	var cands []cand
	a.mu.Lock()
	for i, h := range a.health {
		if !h.healthy && !samples[i].lost && now.Sub(h.lastBad) >= a.cfg.RecoveryQuiet {
			cands = append(cands, cand{i, h.lastBad})
		}
	}
	a.mu.Unlock()
	for _, c := range cands {
		reason := a.probe(a.gpus[c.i])
		a.mu.Lock()
		h := &a.health[c.i]
		switch {
		case h.healthy || !h.lastBad.Equal(c.lastBad):
			// a new fault arrived while probing: the quiet period restarts
		case reason != "":
			if reason != h.reason {
				a.log.Warn("gpu still unhealthy after quiet period", "gpu", c.i, "uuid", a.gpus[c.i].uuid, "reason", reason)
			}
			h.reason = reason
		default:
			a.log.Info("gpu recovered", "gpu", c.i, "uuid", a.gpus[c.i].uuid, "was", h.reason, "unhealthy_for", now.Sub(h.since).Round(time.Second))
			h.healthy, h.reason, h.since = true, "", time.Time{}
			h.recoveries++
		}
		a.mu.Unlock()
	}
}

// probe returns "" when g looks healthy, else why not.
func (a *Agent) probe(g *gpu) string {
	uuid, ret := g.dev.GetUUID()
	switch {
	case ret == gonvml.ERROR_GPU_IS_LOST:
		return "gpu lost"
	case ret != gonvml.SUCCESS:
		return fmt.Sprintf("recovery probe: uuid: %v", ret)
	case uuid != g.uuid:
		return fmt.Sprintf("recovery probe: uuid %s, want %s", uuid, g.uuid)
	}
	if _, ret := g.dev.GetMemoryInfo(); ret != gonvml.SUCCESS {
		return fmt.Sprintf("recovery probe: memory info: %v", ret)
	}
	if _, ret := g.dev.GetTemperature(gonvml.TEMPERATURE_GPU); ret != gonvml.SUCCESS && ret != gonvml.ERROR_NOT_SUPPORTED {
		return fmt.Sprintf("recovery probe: temperature: %v", ret)
	}
	_, _, pending, failed, ret := g.dev.GetRemappedRows()
	if ret == gonvml.SUCCESS {
		if failed {
			return "row remapping failed: the GPU needs replacing"
		}
		if pending {
			return "row remap pending: the GPU needs a reset"
		}
	}
	return ""
}

// watchEvents registers every GPU for XID and double-bit ECC events and
// handles them until ctx ends. Without event support health still follows
// lost GPUs through sampling.
func (a *Agent) watchEvents(ctx context.Context) {
	set, ret := a.lib.EventSetCreate()
	if ret != gonvml.SUCCESS {
		a.log.Warn("nvml events unavailable: XID and ECC faults will not be seen", "err", ret)
		return
	}
	defer set.Free()
	want := uint64(gonvml.EventTypeXidCriticalError | gonvml.EventTypeDoubleBitEccError)
	registered := 0
	for _, g := range a.gpus {
		mask := want
		if sup, ret := g.dev.GetSupportedEventTypes(); ret == gonvml.SUCCESS {
			mask &= sup
		}
		if mask == 0 {
			continue
		}
		if ret := g.dev.RegisterEvents(mask, set); ret != gonvml.SUCCESS {
			a.log.Warn("nvml events: register failed", "gpu", g.index, "err", ret)
			continue
		}
		registered++
	}
	a.log.Debug("watching nvml events", "gpus", registered)
	for ctx.Err() == nil {
		e, ret := set.Wait(uint32(eventWait / time.Millisecond))
		switch ret {
		case gonvml.SUCCESS:
			a.handleEvent(e)
		case gonvml.ERROR_TIMEOUT:
		case gonvml.ERROR_GPU_IS_LOST:
			// As the device plugin does: NVML cannot say which one, so all
			// are suspect until the sampler and probes say otherwise.
			now := a.cfg.Now()
			a.mu.Lock()
			for i := range a.gpus {
				a.markUnhealthyLocked(i, "gpu lost (event wait)", now)
			}
			a.mu.Unlock()
			a.nudge()
			sleepCtx(ctx, a.cfg.Interval)
		default:
			a.log.Warn("nvml event wait failed", "err", ret)
			sleepCtx(ctx, a.cfg.Interval)
		}
	}
}

func (a *Agent) handleEvent(e gonvml.EventData) {
	target := -1
	for i, g := range a.gpus {
		if e.Device != nil && g.dev == e.Device {
			target = i
			break
		}
	}
	now := a.cfg.Now()
	a.mu.Lock()
	for i := range a.gpus {
		if target >= 0 && i != target {
			continue
		}
		h := &a.health[i]
		switch {
		case e.EventType&gonvml.EventTypeXidCriticalError != 0:
			xid := e.EventData
			h.xids[xid]++
			h.lastXID, h.anyXID = xid, true
			if a.ignored[xid] {
				a.log.Info("xid (application error, ignored for health)", "gpu", i, "xid", xid)
				continue
			}
			a.markUnhealthyLocked(i, xidReason(xid), now)
		case e.EventType&gonvml.EventTypeDoubleBitEccError != 0:
			a.markUnhealthyLocked(i, "double-bit ECC error", now)
		}
	}
	a.mu.Unlock()
	a.nudge()
}

// nudge asks Run for a sample now, so a fault reaches /metrics and the
// inventory without waiting for the next tick.
func (a *Agent) nudge() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// xidReason names the XIDs an operator meets most, so the inventory says
// what happened without a trip to NVIDIA's table.
func xidReason(xid uint64) string {
	what := map[uint64]string{
		48:  "double-bit ECC error",
		61:  "internal micro-controller breakpoint",
		62:  "internal micro-controller halt",
		63:  "ECC page retirement or row remapping",
		64:  "ECC page retirement or row remapping failure",
		74:  "NVLink error",
		79:  "GPU has fallen off the bus",
		92:  "high single-bit ECC error rate",
		94:  "contained ECC error",
		95:  "uncontained ECC error",
		119: "GSP RPC timeout",
		120: "GSP error",
	}[xid]
	if what == "" {
		return fmt.Sprintf("xid %d", xid)
	}
	return fmt.Sprintf("xid %d (%s)", xid, what)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (a *Agent) buildSnapshotLocked(now time.Time, took time.Duration) *snapshot {
	s := &snapshot{
		at:       now,
		took:     took,
		gpus:     make([]GPUStatus, len(a.gpus)),
		samples:  a.samples,
		health:   make([]healthState, len(a.gpus)),
		nvmlErrs: maps.Clone(a.nvmlErrs),
		podErrs:  a.podErrs,
	}
	inv := &inventory.Inventory{Version: inventory.Version, Node: a.cfg.NodeName, Updated: now.UTC().Truncate(time.Second), Driver: a.driver}
	for i, g := range a.gpus {
		h := a.health[i]
		st := GPUStatus{
			Index: g.index, UUID: g.uuid, Model: g.model, Family: g.family, PCIBusID: g.busID,
			MemoryMiB: g.memMiB, Healthy: h.healthy, Lost: h.lost, Reason: h.reason, Since: h.since,
			Island: a.islands[i], XIDs: maps.Clone(h.xids), LastXID: h.lastXID, Recoveries: h.recoveries,
			Pods: slices.Clone(a.pods[g.uuid]),
		}
		if v, ok := a.samples[i].get(mFBFree); ok {
			free := min(int64(v), g.memMiB)
			st.FreeMiB = &free
		}
		s.gpus[i] = st
		s.health[i] = healthState{xids: st.XIDs, lastXID: h.lastXID, anyXID: h.anyXID, unhealthyTotal: h.unhealthyTotal, recoveries: h.recoveries}

		ig := inventory.GPU{
			Index: g.index, UUID: g.uuid, Model: g.model, Family: g.family, MemoryMiB: g.memMiB,
			FreeMiB: st.FreeMiB, Healthy: h.healthy, Reason: h.reason, Island: a.islands[i],
		}
		if !h.healthy {
			since := h.since.UTC().Truncate(time.Second)
			ig.Since = &since
		}
		inv.GPUs = append(inv.GPUs, ig)
	}
	s.inv = inv
	return s
}

// GPUs returns the latest status of every GPU.
func (a *Agent) GPUs() []GPUStatus {
	return slices.Clone(a.snap.Load().gpus)
}

// Inventory returns the node's inventory as of the latest sample.
func (a *Agent) Inventory() *inventory.Inventory {
	inv := *a.snap.Load().inv
	inv.GPUs = slices.Clone(inv.GPUs)
	return &inv
}

// LastSample is when the latest sample was taken (by Config.Now).
func (a *Agent) LastSample() time.Time { return a.snap.Load().at }

// Interval is the sampling interval in use.
func (a *Agent) Interval() time.Duration { return a.cfg.Interval }

package nvml

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// FakeKinds lists the machines NewFake can pretend to be.
func FakeKinds() []string { return []string{"dgxa100", "dgxh100"} }

// Fake is a machine full of GPUs built on go-nvml's own mock servers
// (mock/dgxa100, mock/dgxh100): they give the devices' identities (names,
// UUIDs, memory sizes, architectures); Fake fills in what they leave unset
// with plausible values that move with time, and lets tests inject XIDs,
// double-bit ECC errors, a lost GPU, a downed NVLink or unsupported calls.
//
// The measurements are served by a thin wrapper around each mock device
// rather than through the mock's Func fields, because the mocks record every
// call in a slice that grows for as long as the process runs.
type Fake struct {
	kind   string
	srv    *server.Server
	lib    *fakeLib
	now    func() time.Time
	start  time.Time
	events chan gonvml.EventData

	mu   sync.Mutex
	gpus []*fakeGPU
	// unsupported names the Device methods that answer ERROR_NOT_SUPPORTED.
	unsupported map[string]bool
}

// fakeProfile is what differs between machine kinds.
type fakeProfile struct {
	idleW, tdpW    float64
	maxSMMHz       float64
	memMHz         uint32
	nvlinks        int
	reservedMiB    uint64
	energyAtBootMJ uint64
}

type fakeGPU struct {
	dev  *server.Device
	wrap *fakeDevice

	lost         bool
	nvlinkDown   bool
	eventMask    uint64 // events registered by the agent
	sbeVol       uint64
	dbeVol       uint64
	dbeAgg       uint64
	remapPending bool
	remapUnc     int
	procs        []gonvml.ProcessInfo // nil: one process using all used memory
	procsSet     bool
}

// FakeOption configures NewFake.
type FakeOption func(*fakeConfig)

type fakeConfig struct {
	now func() time.Time
}

// WithFakeClock makes the fake's values a function of now() instead of the
// wall clock, so tests can read exact values and move time by hand.
func WithFakeClock(now func() time.Time) FakeOption {
	return func(c *fakeConfig) { c.now = now }
}

// fakeEventBuffer bounds undelivered injected events.
const fakeEventBuffer = 64

// NewFake builds a fake machine of the given kind (see FakeKinds).
func NewFake(kind string, opts ...FakeOption) (*Fake, error) {
	c := fakeConfig{now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	var srv *server.Server
	switch kind {
	case "dgxa100":
		srv = dgxa100.New()
	case "dgxh100":
		srv = dgxh100.New()
	default:
		return nil, fmt.Errorf("fake gpus %q: want one of %v", kind, FakeKinds())
	}
	f := &Fake{
		kind:        kind,
		srv:         srv,
		now:         c.now,
		start:       c.now(),
		events:      make(chan gonvml.EventData, fakeEventBuffer),
		unsupported: map[string]bool{},
	}
	for i, d := range srv.Devices {
		sd, ok := d.(*server.Device)
		if !ok {
			return nil, fmt.Errorf("fake gpus %q: device %d is a %T, not a mock server device", kind, i, d)
		}
		g := &fakeGPU{dev: sd}
		g.wrap = &fakeDevice{Device: sd, f: f, i: i}
		f.gpus = append(f.gpus, g)
	}
	f.lib = &fakeLib{Server: srv, f: f}
	return f, nil
}

// Interface is the NVML library the agent uses.
func (f *Fake) Interface() gonvml.Interface { return f.lib }

// Kind is the machine kind given to NewFake.
func (f *Fake) Kind() string { return f.kind }

// Count is the number of GPUs.
func (f *Fake) Count() int { return len(f.gpus) }

// UUID is GPU index's UUID ("" when out of range).
func (f *Fake) UUID(index int) string {
	if index < 0 || index >= len(f.gpus) {
		return ""
	}
	return f.gpus[index].dev.UUID
}

func (f *Fake) gpu(index int) (*fakeGPU, error) {
	if index < 0 || index >= len(f.gpus) {
		return nil, fmt.Errorf("fake gpu index %d: must be in 0..%d", index, len(f.gpus)-1)
	}
	return f.gpus[index], nil
}

// send queues an event if the agent registered for its type, as NVML only
// reports registered events. Callers hold f.mu.
func (f *Fake) send(index int, typ, data uint64) error {
	g := f.gpus[index]
	if g.eventMask&typ == 0 {
		return fmt.Errorf("fake gpu %d: no event set registered for event type %#x", index, typ)
	}
	select {
	case f.events <- gonvml.EventData{Device: g.wrap, EventType: typ, EventData: data}:
		return nil
	default:
		return fmt.Errorf("fake gpu %d: %d events undelivered: the agent is not waiting for events", index, fakeEventBuffer)
	}
}

// Watched reports whether an agent registered GPU index for XID events.
func (f *Fake) Watched(index int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpu(index)
	return err == nil && g.eventMask&gonvml.EventTypeXidCriticalError != 0
}

// InjectXID reports XID error xid on GPU index through the event set.
func (f *Fake) InjectXID(index int, xid uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.gpu(index); err != nil {
		return err
	}
	return f.send(index, gonvml.EventTypeXidCriticalError, xid)
}

// InjectDBE records a double-bit ECC error on GPU index: the ECC counters
// grow, a row remap becomes pending (cleared by ResetGPU) and the event is
// reported.
func (f *Fake) InjectDBE(index int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpu(index)
	if err != nil {
		return err
	}
	g.dbeVol++
	g.dbeAgg++
	g.remapUnc++
	g.remapPending = true
	return f.send(index, gonvml.EventTypeDoubleBitEccError, 0)
}

// LoseGPU makes GPU index fall off the bus: every call on it answers
// ERROR_GPU_IS_LOST, and XID 79 is reported when the agent listens for it.
func (f *Fake) LoseGPU(index int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpu(index)
	if err != nil {
		return err
	}
	g.lost = true
	if g.eventMask&gonvml.EventTypeXidCriticalError != 0 {
		return f.send(index, gonvml.EventTypeXidCriticalError, 79)
	}
	return nil
}

// ResetGPU is nvidia-smi --gpu-reset: the GPU answers again, its volatile
// ECC counters are cleared and a pending row remap is applied.
func (f *Fake) ResetGPU(index int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpu(index)
	if err != nil {
		return err
	}
	g.lost = false
	g.sbeVol, g.dbeVol = 0, 0
	g.remapPending = false
	return nil
}

// SetNvLinkDown takes all NVLinks of GPU index down (or back up).
func (f *Fake) SetNvLinkDown(index int, down bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpu(index)
	if err != nil {
		return err
	}
	g.nvlinkDown = down
	return nil
}

// SetProcesses sets the compute processes GPU index runs; nil goes back to
// the default of one process holding all used memory.
func (f *Fake) SetProcesses(index int, procs []gonvml.ProcessInfo) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpu(index)
	if err != nil {
		return err
	}
	g.procs, g.procsSet = slices.Clone(procs), procs != nil
	return nil
}

// SetUnsupported makes the named Device method (e.g. "GetPowerUsage")
// answer ERROR_NOT_SUPPORTED on every GPU, or work again.
func (f *Fake) SetUnsupported(method string, unsupported bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if unsupported {
		f.unsupported[method] = true
	} else {
		delete(f.unsupported, method)
	}
}

// FakeReading is what a fake GPU reports at one instant, in NVML's units.
type FakeReading struct {
	UtilGPU, UtilMemory  uint32
	TotalBytes           uint64
	ReservedBytes        uint64
	UsedBytes, FreeBytes uint64 // as NVML's v2 memory info: used excludes reserved
	TempC                uint32
	PowerMW              uint32
	PowerLimitMW         uint32
	EnergyMJ             uint64
	SMClockMHz           uint32
	MemClockMHz          uint32
	PCIeReplays          int
}

// Reading returns GPU index's values at time at, as its calls report them.
func (f *Fake) Reading(index int, at time.Time) (FakeReading, error) {
	if _, err := f.gpu(index); err != nil {
		return FakeReading{}, err
	}
	return f.reading(index, at), nil
}

func (f *Fake) profile() fakeProfile {
	if f.kind == "dgxh100" {
		return fakeProfile{idleW: 70, tdpW: 700, maxSMMHz: 1980, memMHz: 2619, nvlinks: 18, reservedMiB: 570, energyAtBootMJ: 3_000_000_000}
	}
	return fakeProfile{idleW: 55, tdpW: 400, maxSMMHz: 1410, memMHz: 1215, nvlinks: 12, reservedMiB: 455, energyAtBootMJ: 2_000_000_000}
}

// The load of GPU i follows 50 + 40*sin(w*t + phase_i): every value moves,
// the GPUs differ, and energy (the integral of power) has a closed form, so
// it grows exactly as the power readings say.
const (
	fakePeriod   = 120 * time.Second
	fakeMemCycle = 600 * time.Second
)

func (f *Fake) reading(i int, at time.Time) FakeReading {
	p := f.profile()
	t := at.Sub(f.start).Seconds()
	if t < 0 {
		t = 0
	}
	w := 2 * math.Pi / fakePeriod.Seconds()
	phase := 0.7 * float64(i)
	load := 50 + 40*math.Sin(w*t+phase) // percent, 10..90

	totalMiB := f.gpus[i].dev.Config.MemoryMB
	usable := float64(totalMiB - p.reservedMiB)
	memShare := 0.45 + 0.25*math.Sin(2*math.Pi*t/fakeMemCycle.Seconds()+phase)
	usedMiB := uint64(usable * memShare)

	perPct := (p.tdpW - p.idleW) / 100 // W per percent of load
	powerW := p.idleW + perPct*load
	// integral of idle + perPct*(50 + 40 sin(wt+phase)) dt from 0 to t, in J
	energyJ := (p.idleW+perPct*50)*t - perPct*40/w*(math.Cos(w*t+phase)-math.Cos(phase))

	return FakeReading{
		UtilGPU:       uint32(math.Round(load)),
		UtilMemory:    uint32(math.Round(load * 0.55)),
		TotalBytes:    totalMiB << 20,
		ReservedBytes: p.reservedMiB << 20,
		UsedBytes:     usedMiB << 20,
		FreeBytes:     (totalMiB - p.reservedMiB - usedMiB) << 20,
		TempC:         uint32(math.Round(31 + 0.4*load)),
		PowerMW:       uint32(math.Round(powerW * 1000)),
		PowerLimitMW:  uint32(p.tdpW * 1000),
		EnergyMJ:      p.energyAtBootMJ*uint64(i+1) + uint64(energyJ*1000),
		SMClockMHz:    uint32(math.Round(p.maxSMMHz * (0.6 + 0.4*load/100))),
		MemClockMHz:   p.memMHz,
		PCIeReplays:   int(t / (900 + 60*float64(i))),
	}
}

// fakeLib is the NVML library: the mock server, with device handles that
// are the wrappers and an event set fed by the injectors.
type fakeLib struct {
	*server.Server
	f *Fake
}

func (l *fakeLib) DeviceGetCount() (int, gonvml.Return) { return len(l.f.gpus), gonvml.SUCCESS }

func (l *fakeLib) DeviceGetHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	if i < 0 || i >= len(l.f.gpus) {
		return nil, gonvml.ERROR_INVALID_ARGUMENT
	}
	return l.f.gpus[i].wrap, gonvml.SUCCESS
}

func (l *fakeLib) DeviceGetHandleByUUID(uuid string) (gonvml.Device, gonvml.Return) {
	for _, g := range l.f.gpus {
		if g.dev.UUID == uuid {
			return g.wrap, gonvml.SUCCESS
		}
	}
	return nil, gonvml.ERROR_NOT_FOUND
}

func (l *fakeLib) EventSetCreate() (gonvml.EventSet, gonvml.Return) {
	es := &mock.EventSet{}
	es.WaitFunc = func(timeoutMs uint32) (gonvml.EventData, gonvml.Return) {
		t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
		defer t.Stop()
		select {
		case e := <-l.f.events:
			return e, gonvml.SUCCESS
		case <-t.C:
			return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
		}
	}
	es.FreeFunc = func() gonvml.Return { return gonvml.SUCCESS }
	return es, gonvml.SUCCESS
}

// fakeDevice answers the measurement calls of one GPU; everything else goes
// to the mock device it wraps.
type fakeDevice struct {
	*server.Device
	f *Fake
	i int
}

// check says how a call should fail, if at all. Callers hold f.mu.
func (d *fakeDevice) check(method string) gonvml.Return {
	if d.f.gpus[d.i].lost {
		return gonvml.ERROR_GPU_IS_LOST
	}
	if d.f.unsupported[method] {
		return gonvml.ERROR_NOT_SUPPORTED
	}
	return gonvml.SUCCESS
}

// read locks the fake, checks the call and returns the GPU and its reading.
func (d *fakeDevice) read(method string) (*fakeGPU, FakeReading, gonvml.Return) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if ret := d.check(method); ret != gonvml.SUCCESS {
		return nil, FakeReading{}, ret
	}
	g := *d.f.gpus[d.i] // a copy: the caller reads it without the lock
	return &g, d.f.reading(d.i, d.f.now()), gonvml.SUCCESS
}

func (d *fakeDevice) GetUUID() (string, gonvml.Return) {
	if _, _, ret := d.read("GetUUID"); ret != gonvml.SUCCESS {
		return "", ret
	}
	return d.Device.UUID, gonvml.SUCCESS
}

func (d *fakeDevice) GetName() (string, gonvml.Return) {
	if _, _, ret := d.read("GetName"); ret != gonvml.SUCCESS {
		return "", ret
	}
	return d.Device.Config.Name, gonvml.SUCCESS
}

func (d *fakeDevice) GetIndex() (int, gonvml.Return) {
	if _, _, ret := d.read("GetIndex"); ret != gonvml.SUCCESS {
		return 0, ret
	}
	return d.Device.Index, gonvml.SUCCESS
}

func (d *fakeDevice) GetPciInfo() (gonvml.PciInfo, gonvml.Return) {
	if _, _, ret := d.read("GetPciInfo"); ret != gonvml.SUCCESS {
		return gonvml.PciInfo{}, ret
	}
	p := gonvml.PciInfo{Bus: uint32(d.Device.Index), PciDeviceId: d.Device.Config.PciDeviceId}
	for i, c := range []byte(d.Device.PciBusID) {
		if i >= len(p.BusId)-1 {
			break
		}
		p.BusId[i] = int8(c)
	}
	return p, gonvml.SUCCESS
}

func (d *fakeDevice) GetMemoryInfo() (gonvml.Memory, gonvml.Return) {
	_, r, ret := d.read("GetMemoryInfo")
	if ret != gonvml.SUCCESS {
		return gonvml.Memory{}, ret
	}
	// v1 counts the driver's reservation as used.
	return gonvml.Memory{Total: r.TotalBytes, Used: r.UsedBytes + r.ReservedBytes, Free: r.FreeBytes}, gonvml.SUCCESS
}

func (d *fakeDevice) GetMemoryInfo_v2() (gonvml.Memory_v2, gonvml.Return) {
	_, r, ret := d.read("GetMemoryInfo_v2")
	if ret != gonvml.SUCCESS {
		return gonvml.Memory_v2{}, ret
	}
	return gonvml.Memory_v2{Version: 2, Total: r.TotalBytes, Reserved: r.ReservedBytes, Used: r.UsedBytes, Free: r.FreeBytes}, gonvml.SUCCESS
}

func (d *fakeDevice) GetUtilizationRates() (gonvml.Utilization, gonvml.Return) {
	_, r, ret := d.read("GetUtilizationRates")
	if ret != gonvml.SUCCESS {
		return gonvml.Utilization{}, ret
	}
	return gonvml.Utilization{Gpu: r.UtilGPU, Memory: r.UtilMemory}, gonvml.SUCCESS
}

func (d *fakeDevice) GetTemperature(s gonvml.TemperatureSensors) (uint32, gonvml.Return) {
	_, r, ret := d.read("GetTemperature")
	if ret != gonvml.SUCCESS {
		return 0, ret
	}
	if s != gonvml.TEMPERATURE_GPU {
		return 0, gonvml.ERROR_INVALID_ARGUMENT
	}
	return r.TempC, gonvml.SUCCESS
}

func (d *fakeDevice) GetPowerUsage() (uint32, gonvml.Return) {
	_, r, ret := d.read("GetPowerUsage")
	return r.PowerMW, ret
}

func (d *fakeDevice) GetPowerManagementLimit() (uint32, gonvml.Return) {
	_, r, ret := d.read("GetPowerManagementLimit")
	return r.PowerLimitMW, ret
}

func (d *fakeDevice) GetTotalEnergyConsumption() (uint64, gonvml.Return) {
	_, r, ret := d.read("GetTotalEnergyConsumption")
	return r.EnergyMJ, ret
}

func (d *fakeDevice) GetClockInfo(c gonvml.ClockType) (uint32, gonvml.Return) {
	_, r, ret := d.read("GetClockInfo")
	if ret != gonvml.SUCCESS {
		return 0, ret
	}
	switch c {
	case gonvml.CLOCK_SM:
		return r.SMClockMHz, gonvml.SUCCESS
	case gonvml.CLOCK_MEM:
		return r.MemClockMHz, gonvml.SUCCESS
	}
	return 0, gonvml.ERROR_NOT_SUPPORTED
}

func (d *fakeDevice) GetTotalEccErrors(typ gonvml.MemoryErrorType, counter gonvml.EccCounterType) (uint64, gonvml.Return) {
	g, _, ret := d.read("GetTotalEccErrors")
	if ret != gonvml.SUCCESS {
		return 0, ret
	}
	switch {
	case typ == gonvml.MEMORY_ERROR_TYPE_CORRECTED && counter == gonvml.VOLATILE_ECC:
		return g.sbeVol, gonvml.SUCCESS
	case typ == gonvml.MEMORY_ERROR_TYPE_CORRECTED && counter == gonvml.AGGREGATE_ECC:
		return g.sbeVol + 2, gonvml.SUCCESS // a couple from before this boot
	case typ == gonvml.MEMORY_ERROR_TYPE_UNCORRECTED && counter == gonvml.VOLATILE_ECC:
		return g.dbeVol, gonvml.SUCCESS
	case typ == gonvml.MEMORY_ERROR_TYPE_UNCORRECTED && counter == gonvml.AGGREGATE_ECC:
		return g.dbeAgg, gonvml.SUCCESS
	}
	return 0, gonvml.ERROR_INVALID_ARGUMENT
}

func (d *fakeDevice) GetRemappedRows() (int, int, bool, bool, gonvml.Return) {
	g, _, ret := d.read("GetRemappedRows")
	if ret != gonvml.SUCCESS {
		return 0, 0, false, false, ret
	}
	return 0, g.remapUnc, g.remapPending, false, gonvml.SUCCESS
}

func (d *fakeDevice) GetPcieReplayCounter() (int, gonvml.Return) {
	_, r, ret := d.read("GetPcieReplayCounter")
	return r.PCIeReplays, ret
}

func (d *fakeDevice) GetNvLinkState(link int) (gonvml.EnableState, gonvml.Return) {
	g, _, ret := d.read("GetNvLinkState")
	if ret != gonvml.SUCCESS {
		return gonvml.FEATURE_DISABLED, ret
	}
	if link < 0 || link >= d.f.profile().nvlinks {
		return gonvml.FEATURE_DISABLED, gonvml.ERROR_INVALID_ARGUMENT
	}
	if g.nvlinkDown {
		return gonvml.FEATURE_DISABLED, gonvml.SUCCESS
	}
	return gonvml.FEATURE_ENABLED, gonvml.SUCCESS
}

// GetP2PStatus answers NVLink reachability: every GPU of a DGX reaches every
// other through the NVSwitches unless its links are down.
func (d *fakeDevice) GetP2PStatus(other gonvml.Device, caps gonvml.GpuP2PCapsIndex) (gonvml.GpuP2PStatus, gonvml.Return) {
	g, _, ret := d.read("GetP2PStatus")
	if ret != gonvml.SUCCESS {
		return gonvml.P2P_STATUS_NOT_SUPPORTED, ret
	}
	o, ok := other.(*fakeDevice)
	if !ok || o.f != d.f {
		return gonvml.P2P_STATUS_NOT_SUPPORTED, gonvml.ERROR_INVALID_ARGUMENT
	}
	if caps != gonvml.P2P_CAPS_INDEX_NVLINK {
		return gonvml.P2P_STATUS_OK, gonvml.SUCCESS // PCIe P2P works between all
	}
	d.f.mu.Lock()
	peer := *d.f.gpus[o.i]
	d.f.mu.Unlock()
	if g.nvlinkDown || peer.nvlinkDown || peer.lost {
		return gonvml.P2P_STATUS_NOT_SUPPORTED, gonvml.SUCCESS
	}
	return gonvml.P2P_STATUS_OK, gonvml.SUCCESS
}

func (d *fakeDevice) GetComputeRunningProcesses() ([]gonvml.ProcessInfo, gonvml.Return) {
	g, r, ret := d.read("GetComputeRunningProcesses")
	if ret != gonvml.SUCCESS {
		return nil, ret
	}
	if g.procsSet {
		return slices.Clone(g.procs), gonvml.SUCCESS
	}
	return []gonvml.ProcessInfo{{Pid: uint32(40000 + d.i), UsedGpuMemory: r.UsedBytes}}, gonvml.SUCCESS
}

func (d *fakeDevice) GetSupportedEventTypes() (uint64, gonvml.Return) {
	if _, _, ret := d.read("GetSupportedEventTypes"); ret != gonvml.SUCCESS {
		return 0, ret
	}
	return gonvml.EventTypeXidCriticalError | gonvml.EventTypeDoubleBitEccError | gonvml.EventTypeSingleBitEccError, gonvml.SUCCESS
}

func (d *fakeDevice) RegisterEvents(mask uint64, _ gonvml.EventSet) gonvml.Return {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if ret := d.check("RegisterEvents"); ret != gonvml.SUCCESS {
		return ret
	}
	d.f.gpus[d.i].eventMask |= mask
	return gonvml.SUCCESS
}

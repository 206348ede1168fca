package nvml

import (
	"strings"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
)

// metricID indexes the per-GPU measurements.
type metricID int

const (
	mGPUUtil metricID = iota
	mMemCopyUtil
	mFBTotal
	mFBUsed
	mFBFree
	mFBReserved
	mGPUTemp
	mPower
	mPowerLimit
	mEnergy
	mSMClock
	mMemClock
	mECCSBEVol
	mECCDBEVol
	mECCSBEAgg
	mECCDBEAgg
	mRemapCorrectable
	mRemapUncorrectable
	mRemapPending
	mRemapFailure
	mPCIeReplay
	mNVLinks
	mNVLinksActive
	mProcesses
	numMetrics
)

// metricDef is one exported measurement: dcgm-exporter's name, help and
// unit where it has one, so dashboards built for it work unchanged.
type metricDef struct {
	name, help string
	typ        prometheus.ValueType
}

func metricDefs() [numMetrics]metricDef {
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return [numMetrics]metricDef{
		mGPUUtil:            {"DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", g},
		mMemCopyUtil:        {"DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", g},
		mFBTotal:            {"DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", g},
		mFBUsed:             {"DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", g},
		mFBFree:             {"DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", g},
		mFBReserved:         {"DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved by the driver (in MiB).", g},
		mGPUTemp:            {"DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", g},
		mPower:              {"DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", g},
		mPowerLimit:         {"DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", g},
		mEnergy:             {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).", c},
		mSMClock:            {"DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", g},
		mMemClock:           {"DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", g},
		mECCSBEVol:          {"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", c},
		mECCDBEVol:          {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", c},
		mECCSBEAgg:          {"DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "Total number of single-bit persistent ECC errors.", c},
		mECCDBEAgg:          {"DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "Total number of double-bit persistent ECC errors.", c},
		mRemapCorrectable:   {"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for correctable errors.", c},
		mRemapUncorrectable: {"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for uncorrectable errors.", c},
		mRemapPending:       {"babelfish_gpu_row_remap_pending", "1 when a row remap waits for a GPU reset.", g},
		mRemapFailure:       {"DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether remapping of rows has failed.", g},
		mPCIeReplay:         {"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", c},
		mNVLinks:            {"babelfish_gpu_nvlinks", "NVLinks the GPU has.", g},
		mNVLinksActive:      {"babelfish_gpu_nvlinks_active", "NVLinks of the GPU that are up.", g},
		mProcesses:          {"babelfish_gpu_compute_processes", "Compute processes running on the GPU.", g},
	}
}

// sample is one GPU's measurements at one instant. A measurement NVML does
// not support (or failed to read) has its bit clear in has and is left out
// of /metrics: never a sentinel.
type sample struct {
	vals [numMetrics]float64
	has  uint64
	lost bool
}

func (s *sample) set(m metricID, v float64) {
	s.vals[m] = v
	s.has |= 1 << uint(m)
}

func (s *sample) get(m metricID) (float64, bool) {
	return s.vals[m], s.has&(1<<uint(m)) != 0
}

// reader reads one GPU, counting NVML's errors per function.
type reader struct {
	s    *sample
	errs func(fn string)
}

// ok classifies an NVML return: success keeps the value; not supported
// drops it quietly; a lost GPU stops the read; anything else is counted.
func (r *reader) ok(fn string, ret gonvml.Return) bool {
	switch ret {
	case gonvml.SUCCESS:
		return true
	case gonvml.ERROR_NOT_SUPPORTED:
	case gonvml.ERROR_GPU_IS_LOST:
		r.s.lost = true
	default:
		r.errs(fn)
	}
	return false
}

const mib = 1 << 20

// toMiB is b bytes in whole MiB, rounded up (nvidia-smi's convention).
func toMiB(b uint64) float64 { return float64((b + mib - 1) / mib) }

// slowMetrics are the metrics of the queries NVML answers slowly (bench/nvml
// -calls on an H100: the energy counter 2.9 ms, the power limit and PCIe
// replays about 0.15 ms, every other query under 10 us), which change
// rarely or only accumulate: Config.SlowInterval paces them.
const slowMetrics uint64 = 1<<mEnergy | 1<<mPowerLimit | 1<<mPCIeReplay

// readDevice takes one sample of dev. With prev set it skips the slow
// queries and carries prev's values of slowMetrics instead. It stops at the
// first call that says the GPU is lost.
func readDevice(dev gonvml.Device, errs func(fn string), prev *sample) sample {
	var s sample
	r := &reader{s: &s, errs: errs}
	slow := func(step func()) func() {
		if prev == nil {
			return step
		}
		return func() {
			s.has |= prev.has & slowMetrics
			for m := range metricID(numMetrics) {
				if slowMetrics&(1<<uint(m)) != 0 {
					s.vals[m] = prev.vals[m]
				}
			}
		}
	}
	steps := []func(){
		func() {
			if u, ret := dev.GetUtilizationRates(); r.ok("GetUtilizationRates", ret) {
				s.set(mGPUUtil, float64(u.Gpu))
				s.set(mMemCopyUtil, float64(u.Memory))
			}
		},
		func() {
			// v2 splits off the driver's reservation, as nvidia-smi's
			// memory.used does; v1 is the fallback for old drivers.
			// Each in whole MiB rounded up, as nvidia-smi prints them: on
			// an H100 under load NVML gave 882.8 MiB used and 80196.2 MiB
			// free, and nvidia-smi printed 883 and 80197.
			if m, ret := dev.GetMemoryInfo_v2(); ret == gonvml.SUCCESS {
				s.set(mFBTotal, toMiB(m.Total))
				s.set(mFBUsed, toMiB(m.Used))
				s.set(mFBFree, toMiB(m.Free))
				s.set(mFBReserved, toMiB(m.Reserved))
			} else if ret == gonvml.ERROR_GPU_IS_LOST {
				r.ok("GetMemoryInfo_v2", ret)
			} else if m, ret := dev.GetMemoryInfo(); r.ok("GetMemoryInfo", ret) {
				s.set(mFBTotal, toMiB(m.Total))
				s.set(mFBUsed, toMiB(m.Used))
				s.set(mFBFree, toMiB(m.Free))
			}
		},
		func() {
			if v, ret := dev.GetTemperature(gonvml.TEMPERATURE_GPU); r.ok("GetTemperature", ret) {
				s.set(mGPUTemp, float64(v))
			}
		},
		func() {
			if v, ret := dev.GetPowerUsage(); r.ok("GetPowerUsage", ret) {
				s.set(mPower, float64(v)/1000)
			}
		},
		slow(func() {
			if v, ret := dev.GetPowerManagementLimit(); r.ok("GetPowerManagementLimit", ret) {
				s.set(mPowerLimit, float64(v)/1000)
			}
		}),
		slow(func() {
			if v, ret := dev.GetTotalEnergyConsumption(); r.ok("GetTotalEnergyConsumption", ret) {
				s.set(mEnergy, float64(v))
			}
		}),
		slow(func() {
			if v, ret := dev.GetPcieReplayCounter(); r.ok("GetPcieReplayCounter", ret) {
				s.set(mPCIeReplay, float64(v))
			}
		}),
		func() {
			if v, ret := dev.GetClockInfo(gonvml.CLOCK_SM); r.ok("GetClockInfo", ret) {
				s.set(mSMClock, float64(v))
			}
		},
		func() {
			if v, ret := dev.GetClockInfo(gonvml.CLOCK_MEM); r.ok("GetClockInfo", ret) {
				s.set(mMemClock, float64(v))
			}
		},
		func() {
			for _, e := range []struct {
				m   metricID
				typ gonvml.MemoryErrorType
				cnt gonvml.EccCounterType
			}{
				{mECCSBEVol, gonvml.MEMORY_ERROR_TYPE_CORRECTED, gonvml.VOLATILE_ECC},
				{mECCDBEVol, gonvml.MEMORY_ERROR_TYPE_UNCORRECTED, gonvml.VOLATILE_ECC},
				{mECCSBEAgg, gonvml.MEMORY_ERROR_TYPE_CORRECTED, gonvml.AGGREGATE_ECC},
				{mECCDBEAgg, gonvml.MEMORY_ERROR_TYPE_UNCORRECTED, gonvml.AGGREGATE_ECC},
			} {
				v, ret := dev.GetTotalEccErrors(e.typ, e.cnt)
				if !r.ok("GetTotalEccErrors", ret) {
					return // ECC off or unsupported: all four go together
				}
				s.set(e.m, float64(v))
			}
		},
		func() {
			if corr, unc, pending, failed, ret := dev.GetRemappedRows(); r.ok("GetRemappedRows", ret) {
				s.set(mRemapCorrectable, float64(corr))
				s.set(mRemapUncorrectable, float64(unc))
				s.set(mRemapPending, b2f(pending))
				s.set(mRemapFailure, b2f(failed))
			}
		},
		func() {
			// Links are numbered from 0; the first invalid one ends the list.
			links, active := 0, 0
			for l := 0; l < gonvml.NVLINK_MAX_LINKS; l++ {
				st, ret := dev.GetNvLinkState(l)
				if ret == gonvml.ERROR_GPU_IS_LOST {
					r.ok("GetNvLinkState", ret)
					return
				}
				if ret != gonvml.SUCCESS {
					break
				}
				links++
				if st == gonvml.FEATURE_ENABLED {
					active++
				}
			}
			if links > 0 {
				s.set(mNVLinks, float64(links))
				s.set(mNVLinksActive, float64(active))
			}
		},
		func() {
			if ps, ret := dev.GetComputeRunningProcesses(); r.ok("GetComputeRunningProcesses", ret) {
				s.set(mProcesses, float64(len(ps)))
			}
		},
	}
	for _, step := range steps {
		step()
		if s.lost {
			s.has = 0
			return s
		}
	}
	return s
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// busID turns NVML's C string into Go's.
func busID(p gonvml.PciInfo) string {
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return strings.ToLower(b.String())
}

// family names an architecture as GPU Feature Discovery does.
func family(a gonvml.DeviceArchitecture) string {
	switch a {
	case gonvml.DEVICE_ARCH_KEPLER:
		return "kepler"
	case gonvml.DEVICE_ARCH_MAXWELL:
		return "maxwell"
	case gonvml.DEVICE_ARCH_PASCAL:
		return "pascal"
	case gonvml.DEVICE_ARCH_VOLTA:
		return "volta"
	case gonvml.DEVICE_ARCH_TURING:
		return "turing"
	case gonvml.DEVICE_ARCH_AMPERE:
		return "ampere"
	case gonvml.DEVICE_ARCH_ADA:
		return "ada-lovelace"
	case gonvml.DEVICE_ARCH_HOPPER:
		return "hopper"
	case gonvml.DEVICE_ARCH_BLACKWELL:
		return "blackwell"
	}
	return ""
}

// islands groups GPUs by NVLink reachability (P2P over NVLink) and numbers
// the groups 0, 1, ... in order of their lowest index. A GPU whose status
// cannot be read is alone in its island.
func islands(devs []gonvml.Device) []int {
	n := len(devs)
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			st, ret := devs[i].GetP2PStatus(devs[j], gonvml.P2P_CAPS_INDEX_NVLINK)
			if ret == gonvml.SUCCESS && st == gonvml.P2P_STATUS_OK {
				a, b := find(i), find(j)
				if a < b {
					parent[b] = a
				} else if b < a {
					parent[a] = b
				}
			}
		}
	}
	ids := make([]int, n)
	number := map[int]int{}
	for i := 0; i < n; i++ {
		root := find(i)
		id, ok := number[root]
		if !ok {
			id = len(number)
			number[root] = id
		}
		ids[i] = id
	}
	return ids
}

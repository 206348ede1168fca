package main

import (
	"fmt"
	"slices"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// callTimes times each NVML query the agent makes per sample, n times on
// every GPU of this machine, and prints one line per call: what one sample
// costs, and where. It needs a real driver.
func callTimes(n int) error {
	lib := gonvml.New()
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		return fmt.Errorf("NVML init: %v (this mode needs an NVIDIA driver)", lib.ErrorString(ret))
	}
	defer lib.Shutdown()
	count, ret := lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("NVML device count: %v", lib.ErrorString(ret))
	}
	for i := range count {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			return fmt.Errorf("GPU %d: %v", i, lib.ErrorString(ret))
		}
		calls := []struct {
			name string
			fn   func() gonvml.Return
		}{
			{"GetUtilizationRates", func() gonvml.Return { _, r := dev.GetUtilizationRates(); return r }},
			{"GetMemoryInfo_v2", func() gonvml.Return { _, r := dev.GetMemoryInfo_v2(); return r }},
			{"GetTemperature", func() gonvml.Return { _, r := dev.GetTemperature(gonvml.TEMPERATURE_GPU); return r }},
			{"GetPowerUsage", func() gonvml.Return { _, r := dev.GetPowerUsage(); return r }},
			{"GetPowerManagementLimit", func() gonvml.Return { _, r := dev.GetPowerManagementLimit(); return r }},
			{"GetTotalEnergyConsumption", func() gonvml.Return { _, r := dev.GetTotalEnergyConsumption(); return r }},
			{"GetClockInfo(SM)", func() gonvml.Return { _, r := dev.GetClockInfo(gonvml.CLOCK_SM); return r }},
			{"GetClockInfo(MEM)", func() gonvml.Return { _, r := dev.GetClockInfo(gonvml.CLOCK_MEM); return r }},
			{"GetTotalEccErrors", func() gonvml.Return {
				_, r := dev.GetTotalEccErrors(gonvml.MEMORY_ERROR_TYPE_CORRECTED, gonvml.VOLATILE_ECC)
				return r
			}},
			{"GetRemappedRows", func() gonvml.Return { _, _, _, _, r := dev.GetRemappedRows(); return r }},
			{"GetPcieReplayCounter", func() gonvml.Return { _, r := dev.GetPcieReplayCounter(); return r }},
			{"GetNvLinkState(0)", func() gonvml.Return { _, r := dev.GetNvLinkState(0); return r }},
			{"GetComputeRunningProcesses", func() gonvml.Return { _, r := dev.GetComputeRunningProcesses(); return r }},
		}
		for _, c := range calls {
			ts := make([]time.Duration, n)
			var last gonvml.Return
			for k := range ts {
				t0 := time.Now()
				last = c.fn()
				ts[k] = time.Since(t0)
			}
			slices.Sort(ts)
			fmt.Printf("bench nvml gpu=%d call=%s ret=%q p50_us=%.1f p99_us=%.1f\n",
				i, c.name, lib.ErrorString(last), us(ts[n/2]), us(ts[min(n-1, n*99/100)]))
		}
		links := 0
		for l := 0; l < gonvml.NVLINK_MAX_LINKS; l++ {
			if _, r := dev.GetNvLinkState(l); r != gonvml.SUCCESS {
				break
			}
			links++
		}
		fmt.Printf("bench nvml gpu=%d nvlinks=%d (GetNvLinkState is called once per link and once more per sample)\n", i, links)
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

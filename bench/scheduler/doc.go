// Command scheduler benchmarks the scheduling core: it replays the three
// openb workloads through the trace simulator for every policy and seed, sets
// the allocation curves beside the FGD artifact's published ones, replays
// the workloads whose pod lists carry times with their durations (queueing
// delay and JCT of every policy beside fgd's, lines "bench
// scheduler-replay"), and measures the core's placement throughput.
//
//	go run ./bench/scheduler [-traces scheduler/sim/testdata/openb] [-workloads default,gpushare40,multigpu50]
//	    [-seeds 42-51] [-policies babelfish,fgd,bestfit,spread] [-parallel N]
//	    [-replay-seeds 42-51|none] [-replay-tune 1.3] [-replay-time-scale 30000]
//
// Run it from the repository root: the traces default to the copy in the
// repository, scheduler/sim/testdata/openb.
package main

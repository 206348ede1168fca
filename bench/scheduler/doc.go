// Command scheduler benchmarks the scheduling core: it replays the three
// openb workloads through the trace simulator for every policy and seed, sets
// the allocation curves beside the FGD artifact's published ones, and
// measures the core's placement throughput.
//
//	go run ./bench/scheduler [-traces ../shared/traces] [-workloads default,gpushare40,multigpu50]
//	    [-seeds 42-51] [-policies babelfish,fgd,bestfit,spread] [-parallel N]
//
// Run it from the repository root: the traces default to ../shared/traces.
package main

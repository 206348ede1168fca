// Package sim replays an Alibaba "openb" GPU cluster trace through the pure
// scheduling core, the way the artifact of "Beware of Fragmentation" (Weng et
// al., USENIX ATC'23) runs its experiment: the task list is tuned to a
// multiple of the cluster's GPU capacity with seeded random copies of trace
// tasks, tasks arrive one by one and never leave, and the GPU allocation is
// recorded after each arrival and averaged per arrival percent. It also reads
// the artifact's published curves so results can be set beside them.
//
// With Config.Durations it also replays time: tasks arrive at their trace
// creation_time (optionally compressed by Config.TimeScale), run for their
// trace duration and leave, and waiting tasks queue as the core queues
// equal-priority jobs (oldest first, with backfill), so queueing delay, JCT,
// makespan and utilisation over time can be compared across policies.
package sim

// Package local is the local executor of `babelfish up`: it runs
// TrainingJobs on this machine as child processes instead of pods. The
// same pure scheduling core as the Kubernetes controller places each gang
// (all ranks or none) on the machine's CPUs and the GPUs the GPU agent
// reports, with priorities and preemption; each rank is a `babelfish
// trainer` process with the environment the controller gives a worker pod
// (rank, world size, rendezvous, dataset, model config), so the trainer
// starts the same way under both.
//
// A rank that dies tears the gang down; after an exponential backoff the
// gang is placed again and the trainer resumes from its last committed
// checkpoint, until spec.backoffLimit restarts are spent (then Failed).
// Cancel and shutdown send SIGTERM, on which the trainer checkpoints and
// exits 0, and SIGKILL after the grace period. Each rank's output is
// appended to a log file per job and rank; job records are JSON files
// under the executor's directory, so a restarted `up` finds its jobs, kills
// what a crashed one left running, and places them again.
//
// Handler and Client are the small HTTP job API (submit, list, get,
// cancel, logs) that `up` serves and the CLI calls.
package local

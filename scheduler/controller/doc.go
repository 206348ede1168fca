// Package controller is the Kubernetes side of Babelfish's GPU scheduler:
// it turns TrainingJobs, Queues, Nodes (with the GPU agent's inventory
// annotation) and worker Pods into a core.Snapshot, asks the pure
// scheduling core for a plan, and carries the plan out through the API
// server.
//
// One scheduling loop runs, on the leader only (a Lease). Every pass reads
// the world afresh from the API server rather than from an informer cache,
// so a pass never acts on a binding or a deletion it cannot see yet; the
// informers only wake the loop. A pass:
//
//  1. moves each job along its life: a failed rank tears the gang down and
//     restarts it from the last checkpoint after an exponential backoff
//     (Failed past spec.backoffLimit); rank 0 exiting 0 ends it; pods of
//     old placements and of deleted jobs are removed;
//  2. builds the snapshot: placed gangs hold their GPUs (from each pod's
//     binding and GPU annotation, else the placement recorded in status),
//     pods still terminating hold theirs, the rest is pending;
//  3. runs core.Schedule and applies the plan: preemptions first (status,
//     then pod deletion with the grace period, an Event on both jobs), then
//     each admitted gang: the placement is written to the job's status
//     while the headless Service and every worker pod are created, and
//     only once all of that has landed are the pods bound (pods/binding),
//     all at once. A gang whose pods cannot all be created and bound is
//     deleted and waits for the next pass: all or none.
//
// Restart safety: pods are named <job>-<gangGeneration>-<rank>, so a pod a
// new leader re-creates collides with the one an old leader made; a pod's
// spec.nodeName is the truth of its binding, and a binding carries the
// pod's UID, so a stale decision cannot bind a newer pod of the same name.
// A placement found in status with pods missing or unbound (the last
// leader died mid-gang) is finished from the recorded placement, or torn
// down when it no longer fits; pods of a placement the status never
// recorded are deleted (they were never bound: binding waits for the
// status).
//
// Worker pods get schedulerName babelfish, restartPolicy Never, a hostname
// under the job's headless Service, and the environment the trainer's
// collective reads: BABELFISH_RANK, BABELFISH_WORLD_SIZE,
// BABELFISH_RENDEZVOUS (rank 0 through the Service), BABELFISH_JOB_ID,
// BABELFISH_GENERATION, plus NVIDIA_VISIBLE_DEVICES with the chosen GPU
// indices.
package controller

// Package inventory is the wire format of a node's GPU inventory: what the
// GPU agent (package nvml) publishes on its Node and what the scheduler reads
// back. It is pure (no Kubernetes client, no NVML), so the scheduler's
// controller, `babelfish gpus` and the agent share one definition without one
// component importing another.
//
// On a Node the inventory is two things:
//
//   - labels in GPU Feature Discovery's style, for people and node selectors:
//     nvidia.com/gpu.product (the model, spaces as dashes), nvidia.com/gpu.count,
//     nvidia.com/gpu.memory (MiB per GPU) and nvidia.com/gpu.family (ampere,
//     hopper, ...). They change only when the hardware does.
//   - the annotation babelfish.dev/gpu-inventory holding the JSON of Inventory:
//     every GPU's index, UUID, model, total and free memory (MiB), health with
//     its reason, and NVLink island. The scheduler reads this one.
//
// Parse and FromNode check everything the scheduler relies on (version,
// unique indices, memory bounds, at most MaxGPUs GPUs, at most MaxBytes of
// JSON) and name the field and the limit when something is off.
package inventory

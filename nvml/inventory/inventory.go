package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Names on the Node.
const (
	// Annotation holds the JSON of Inventory.
	Annotation = "babelfish.dev/gpu-inventory"
	// LabelProduct is the GPU model with spaces as dashes (GFD's style).
	LabelProduct = "nvidia.com/gpu.product"
	// LabelCount is the number of GPUs the agent sees, healthy or not.
	LabelCount = "nvidia.com/gpu.count"
	// LabelMemory is the memory of one GPU in MiB.
	LabelMemory = "nvidia.com/gpu.memory"
	// LabelFamily is the GPU architecture in lower case (ampere, hopper, ...).
	LabelFamily = "nvidia.com/gpu.family"
)

// Limits of the wire format.
const (
	// Version is the only version Parse accepts; a newer agent that changes
	// the meaning of a field bumps it, so an old scheduler refuses rather
	// than misreads.
	Version = 1
	// MaxBytes bounds the annotation; Kubernetes allows 256 KiB for all of a
	// Node's annotations together, and 64 GPUs take about 20 KiB.
	MaxBytes = 64 << 10
	// MaxGPUs matches the scheduler's 64-bit GPU sets.
	MaxGPUs = 64
	// maxLabelValue is Kubernetes' limit on a label value.
	maxLabelValue = 63
)

// ErrNoInventory is returned by FromNode when the Node carries no inventory
// annotation (no agent runs there, or it has not published yet).
var ErrNoInventory = errors.New("inventory: node has no " + Annotation + " annotation")

// Inventory is one node's GPUs as the agent last saw them.
type Inventory struct {
	Version int `json:"version"`
	// Node is the Node's name; FromNode checks it matches.
	Node string `json:"node"`
	// Updated is when the agent built this inventory. The agent republishes
	// at least every heartbeat, so an old Updated means a dead agent.
	Updated time.Time `json:"updated"`
	// Driver is the NVIDIA driver version, when known.
	Driver string `json:"driver,omitempty"`
	GPUs   []GPU  `json:"gpus"`
}

// GPU is one GPU of the node.
type GPU struct {
	// Index is NVML's device index: the one the scheduler binds and the one
	// CUDA_VISIBLE_DEVICES and nvidia-smi use.
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
	Model string `json:"model"`
	// Family is the architecture in lower case, when known.
	Family    string `json:"family,omitempty"`
	MemoryMiB int64  `json:"memoryMiB"`
	// FreeMiB is left out when the agent could not read it (a lost GPU):
	// never a made-up number.
	FreeMiB *int64 `json:"freeMiB,omitempty"`
	Healthy bool   `json:"healthy"`
	// Reason says why an unhealthy GPU is unhealthy ("xid 79", "gpu lost",
	// "double-bit ECC error", ...); Since is when it became so.
	Reason string     `json:"reason,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
	// Island groups GPUs joined by NVLink: GPUs with equal islands reach
	// each other over NVLink. Islands are numbered 0, 1, ... in order of
	// their lowest GPU index.
	Island int `json:"island"`
}

// Validate reports the first field out of its limits.
func (inv *Inventory) Validate() error {
	if inv.Version != Version {
		return fmt.Errorf("inventory version %d: only version %d is understood", inv.Version, Version)
	}
	if strings.TrimSpace(inv.Node) == "" {
		return fmt.Errorf("inventory node: must not be empty")
	}
	if len(inv.GPUs) > MaxGPUs {
		return fmt.Errorf("inventory gpus: %d listed, at most %d", len(inv.GPUs), MaxGPUs)
	}
	seenIndex := make(map[int]bool, len(inv.GPUs))
	seenUUID := make(map[string]bool, len(inv.GPUs))
	for i, g := range inv.GPUs {
		switch {
		case g.Index < 0 || g.Index >= MaxGPUs:
			return fmt.Errorf("inventory gpus[%d] index %d: must be in 0..%d", i, g.Index, MaxGPUs-1)
		case seenIndex[g.Index]:
			return fmt.Errorf("inventory gpus[%d] index %d: duplicate", i, g.Index)
		case g.UUID == "":
			return fmt.Errorf("inventory gpus[%d] uuid: must not be empty", i)
		case seenUUID[g.UUID]:
			return fmt.Errorf("inventory gpus[%d] uuid %s: duplicate", i, g.UUID)
		case g.MemoryMiB < 0:
			return fmt.Errorf("inventory gpus[%d] memoryMiB %d: must be >= 0", i, g.MemoryMiB)
		case g.FreeMiB != nil && (*g.FreeMiB < 0 || *g.FreeMiB > g.MemoryMiB):
			return fmt.Errorf("inventory gpus[%d] freeMiB %d: must be in 0..memoryMiB (%d)", i, *g.FreeMiB, g.MemoryMiB)
		case g.Island < 0 || g.Island >= MaxGPUs:
			return fmt.Errorf("inventory gpus[%d] island %d: must be in 0..%d", i, g.Island, MaxGPUs-1)
		case g.Healthy && g.Reason != "":
			return fmt.Errorf("inventory gpus[%d] reason %q: only unhealthy GPUs have one", i, g.Reason)
		}
		seenIndex[g.Index] = true
		seenUUID[g.UUID] = true
	}
	return nil
}

// Encode validates inv and returns its JSON, as the annotation holds it.
func Encode(inv *Inventory) ([]byte, error) {
	if err := inv.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(inv)
	if err != nil {
		return nil, fmt.Errorf("inventory: encode: %w", err)
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("inventory: encoded size %d bytes: at most %d", len(b), MaxBytes)
	}
	return b, nil
}

// Parse reads the annotation's JSON and validates it. Fields it does not
// know are ignored, so a newer agent may add some without a version bump.
func Parse(data []byte) (*Inventory, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("inventory: %d bytes: at most %d", len(data), MaxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var inv Inventory
	if err := dec.Decode(&inv); err != nil {
		return nil, fmt.Errorf("inventory: parse: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("inventory: parse: trailing data after the JSON object")
	}
	if err := inv.Validate(); err != nil {
		return nil, err
	}
	return &inv, nil
}

// FromNode reads the inventory from a Node's name and annotations (pass
// node.Name and node.Annotations): ErrNoInventory when there is none, an
// error when it is malformed or names another node.
func FromNode(name string, annotations map[string]string) (*Inventory, error) {
	raw, ok := annotations[Annotation]
	if !ok {
		return nil, ErrNoInventory
	}
	inv, err := Parse([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	if inv.Node != name {
		return nil, fmt.Errorf("node %s: inventory node %q: must be the node's own name", name, inv.Node)
	}
	return inv, nil
}

// Model is the model of the lowest-indexed GPU ("" with no GPUs): the
// scheduler assumes one model per node, as GFD's product label does.
func (inv *Inventory) Model() string {
	best := -1
	model := ""
	for _, g := range inv.GPUs {
		if best < 0 || g.Index < best {
			best, model = g.Index, g.Model
		}
	}
	return model
}

// HealthyCount is the number of healthy GPUs.
func (inv *Inventory) HealthyCount() int {
	n := 0
	for _, g := range inv.GPUs {
		if g.Healthy {
			n++
		}
	}
	return n
}

// NodeLabels returns the GFD-style labels for inv (none without GPUs). They
// describe the hardware only, so they change when it does, not with load.
func NodeLabels(inv *Inventory) map[string]string {
	if len(inv.GPUs) == 0 {
		return map[string]string{}
	}
	first := inv.GPUs[0]
	for _, g := range inv.GPUs[1:] {
		if g.Index < first.Index {
			first = g
		}
	}
	l := map[string]string{
		LabelProduct: LabelValue(first.Model),
		LabelCount:   strconv.Itoa(len(inv.GPUs)),
		LabelMemory:  strconv.FormatInt(first.MemoryMiB, 10),
	}
	if first.Family != "" {
		l[LabelFamily] = LabelValue(first.Family)
	}
	return l
}

// LabelValue turns free text (a GPU model name) into a valid label value as
// GFD does: spaces become dashes, other characters a label may not hold
// become underscores, and the result is cut to 63 characters with
// alphanumeric ends.
func LabelValue(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r < 0x80 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	v := b.String()
	if len(v) > maxLabelValue {
		v = v[:maxLabelValue]
	}
	return strings.Trim(v, "-_.")
}

// Equivalent reports whether publishing b after a would tell the scheduler
// nothing new: same GPUs, models, health, reasons and islands, and free
// memory within stepMiB of a's on every GPU. Updated is ignored. The agent
// uses it to write the Node only when something changed.
func Equivalent(a, b *Inventory, stepMiB int64) bool {
	if a.Node != b.Node || a.Driver != b.Driver || len(a.GPUs) != len(b.GPUs) {
		return false
	}
	for i := range a.GPUs {
		x, y := a.GPUs[i], b.GPUs[i]
		if x.Index != y.Index || x.UUID != y.UUID || x.Model != y.Model || x.Family != y.Family ||
			x.MemoryMiB != y.MemoryMiB || x.Healthy != y.Healthy || x.Reason != y.Reason || x.Island != y.Island {
			return false
		}
		if (x.FreeMiB == nil) != (y.FreeMiB == nil) {
			return false
		}
		if x.FreeMiB != nil {
			if d := abs(*x.FreeMiB - *y.FreeMiB); d > 0 && d >= stepMiB {
				return false
			}
		}
	}
	return true
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

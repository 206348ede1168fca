package trainer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"babelfish.dev/babelfish/dataset/loader"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/objstore"
)

// Checkpoint part names under checkpoints/<job>/<step>/.
const (
	PartModel     = model.PartName  // model.Save: config, codebook, weights
	PartOptimizer = "optimizer.bin" // model.Adam.MarshalBinary
	PartState     = "state.json"    // CheckpointState
)

// ErrNoCheckpoint is returned by LatestCheckpoint for a job with no
// committed checkpoint.
var ErrNoCheckpoint = errors.New("no committed checkpoint")

// CheckpointState is a checkpoint's own description, stored as a part and
// as the artifact manifest's meta.
type CheckpointState struct {
	Step int64 `json:"step"`
	// Cursor resumes the data stream at the next global batch. Pairs are
	// drawn from (seed, epoch, sample index), so there is no other RNG state.
	Cursor loader.Cursor `json:"cursor"`
	// Loss is the mean per-example loss of the step; TokenAccuracy its
	// teacher-forced unit accuracy.
	Loss          float64            `json:"loss"`
	TokenAccuracy float64            `json:"token_accuracy"`
	Eval          map[string]float64 `json:"eval,omitempty"`
	WorldSize     int                `json:"world_size"`
	// PlannedSteps and BudgetUsed carry a budgeted job's plan (its step
	// count) and the wall-clock time it has used, so a resumed job keeps
	// its schedule and its budget.
	PlannedSteps int64         `json:"planned_steps,omitempty"`
	BudgetUsed   time.Duration `json:"budget_used,omitempty"`
	// AveragedFrom, on a checkpoint AverageCheckpoints wrote, lists the
	// checkpoints whose weights it averages.
	AveragedFrom []string  `json:"averaged_from,omitempty"`
	Config       Config    `json:"config"`
	Time         time.Time `json:"time"`
}

// CheckpointPrefix is where step's checkpoint of job lives. Steps are
// zero-padded so key order is step order.
func CheckpointPrefix(job string, step int64) string {
	return fmt.Sprintf("%s%012d/", checkpointParent(job), step)
}

func checkpointParent(job string) string { return "checkpoints/" + job + "/" }

// Checkpoint is a loaded checkpoint.
type Checkpoint struct {
	Prefix    string
	State     CheckpointState
	Model     *model.Model
	Optimizer *model.Adam
}

// LatestCheckpoint returns the prefix of job's newest committed checkpoint,
// or an error wrapping ErrNoCheckpoint. Half-written ones (no manifest) are
// never returned.
func LatestCheckpoint(ctx context.Context, store *objstore.Client, job string) (string, error) {
	all, err := Checkpoints(ctx, store, job)
	if err != nil {
		return "", err
	}
	return all[len(all)-1], nil
}

// Checkpoints returns the prefixes of job's committed checkpoints, oldest
// step first, or an error wrapping ErrNoCheckpoint when there are none.
func Checkpoints(ctx context.Context, store *objstore.Client, job string) ([]string, error) {
	prefixes, err := store.ListArtifacts(ctx, checkpointParent(job))
	if err != nil {
		return nil, err
	}
	type ck struct {
		prefix string
		step   int64
	}
	var cks []ck
	for _, p := range prefixes {
		name := strings.TrimSuffix(strings.TrimPrefix(p, checkpointParent(job)), "/")
		step, err := strconv.ParseInt(name, 10, 64)
		if err != nil || strings.Contains(name, "/") {
			continue
		}
		cks = append(cks, ck{p, step})
	}
	if len(cks) == 0 {
		return nil, fmt.Errorf("trainer: job %q: %w under %s", job, ErrNoCheckpoint, checkpointParent(job))
	}
	slices.SortFunc(cks, func(a, b ck) int { return cmp.Compare(a.step, b.step) })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.prefix
	}
	return out, nil
}

// LoadCheckpoint reads and checks a committed checkpoint (every part
// against the manifest's sha256).
func LoadCheckpoint(ctx context.Context, store *objstore.Client, prefix string) (*Checkpoint, error) {
	a, err := store.OpenArtifact(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("trainer: checkpoint %s: %w", prefix, err)
	}
	get := func(name string) ([]byte, error) {
		b, err := a.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("trainer: checkpoint %s part %s: %w", prefix, name, err)
		}
		return b, nil
	}
	raw, err := get(PartState)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Prefix: a.Prefix()}
	if err := json.Unmarshal(raw, &ck.State); err != nil {
		return nil, fmt.Errorf("trainer: checkpoint %s state: %w", prefix, err)
	}
	if raw, err = get(PartModel); err != nil {
		return nil, err
	}
	if ck.Model, err = model.Load(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("trainer: checkpoint %s: %w", prefix, err)
	}
	if raw, err = get(PartOptimizer); err != nil {
		return nil, err
	}
	ck.Optimizer = &model.Adam{}
	if err := ck.Optimizer.UnmarshalBinary(raw); err != nil {
		return nil, fmt.Errorf("trainer: checkpoint %s: %w", prefix, err)
	}
	return ck, nil
}

// saveCheckpoint writes parts first and commits the manifest last.
func saveCheckpoint(ctx context.Context, store *objstore.Client, m *model.Model, opt *model.Adam, st CheckpointState) (string, error) {
	w, err := store.NewArtifact(CheckpointPrefix(st.Config.JobID, st.Step))
	if err != nil {
		return "", err
	}
	var mb bytes.Buffer
	if err := m.Save(&mb); err != nil {
		return "", err
	}
	ob, err := opt.MarshalBinary()
	if err != nil {
		return "", err
	}
	sb, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	for _, p := range []struct {
		name string
		data []byte
	}{{PartModel, mb.Bytes()}, {PartOptimizer, ob}, {PartState, sb}} {
		if _, err := w.Put(ctx, p.name, p.data, nil); err != nil {
			return "", fmt.Errorf("trainer: checkpoint %s part %s: %w", w.Prefix(), p.name, err)
		}
	}
	if _, err := w.Commit(ctx, st); err != nil {
		return "", fmt.Errorf("trainer: committing checkpoint %s: %w", w.Prefix(), err)
	}
	return w.Prefix(), nil
}

package trainer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/objstore"
)

// MaxAverage bounds how many checkpoints AverageCheckpoints averages.
const MaxAverage = 100

// AverageCheckpoints averages the weights of job's last n committed
// checkpoints (checkpoint averaging: the mean of the weights along the end
// of a run is a flatter, often better generalising, point than its last
// step) and commits the result as a checkpoint of job to, at the last
// one's step, with that one's optimizer state and data cursor and the
// sources in State.AveragedFrom. Every source must share the model's
// configuration and codebook. It returns the new checkpoint's prefix.
func AverageCheckpoints(ctx context.Context, store *objstore.Client, job string, n int, to string) (string, error) {
	switch {
	case n < 1 || n > MaxAverage:
		return "", fmt.Errorf("trainer: averaging %d checkpoints: want 1..%d", n, MaxAverage)
	case to == "" || to == job:
		return "", fmt.Errorf("trainer: averaged checkpoint job %q: name a job other than %q, so the run's own checkpoints stay as they are", to, job)
	}
	if err := shard.ValidateName("job id", to); err != nil {
		return "", fmt.Errorf("trainer: averaged checkpoint job: %w", err)
	}
	all, err := Checkpoints(ctx, store, job)
	if err != nil {
		return "", err
	}
	if len(all) < n {
		return "", fmt.Errorf("trainer: job %q has %d committed checkpoints: cannot average the last %d", job, len(all), n)
	}
	srcs := all[len(all)-n:]
	last, err := LoadCheckpoint(ctx, store, srcs[n-1])
	if err != nil {
		return "", err
	}
	sum := make([]float64, last.Model.Params().Size())
	for _, p := range srcs {
		ck := last
		if p != last.Prefix {
			if ck, err = LoadCheckpoint(ctx, store, p); err != nil {
				return "", err
			}
		}
		if !reflect.DeepEqual(ck.Model.Config(), last.Model.Config()) || !reflect.DeepEqual(ck.Model.Codebook(), last.Model.Codebook()) {
			return "", errors.New("trainer: checkpoint " + p + " has another model configuration or codebook than " + last.Prefix + ": only checkpoints of one run can be averaged")
		}
		for i, v := range ck.Model.Params().Flat {
			sum[i] += float64(v)
		}
	}
	flat := last.Model.Params().Flat
	for i, v := range sum {
		flat[i] = float32(v / float64(n))
	}
	st := last.State
	st.Config.JobID = to
	st.AveragedFrom = slices.Clone(srcs)
	return saveCheckpoint(ctx, store, last.Model, last.Optimizer, st)
}

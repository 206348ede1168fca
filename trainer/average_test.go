package trainer

import (
	"strings"
	"testing"

	"babelfish.dev/babelfish/internal/fixture"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/model"
)

// Averaging the last n checkpoints commits a checkpoint whose weights are
// their element-wise mean, with the last one's step, cursor and optimizer,
// and that the evaluation and promotion paths load like any other; bad
// requests fail before anything is written.
func TestAverageCheckpoints(t *testing.T) {
	ctx := t.Context()
	st := fixture.Store(t, testenv.MinIOForTest(t))
	langs := []string{"de", "en", "fr"}
	m := fixture.TinyModel(t, langs, 1, 2)
	opt, err := model.NewAdam(model.DefaultAdamConfig(), m.Params().Size())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig("run", "ds", "v1")
	want := make([]float64, m.Params().Size())
	for i, step := range []int64{100, 200, 300, 400} {
		for j := range m.Params().Flat {
			m.Params().Flat[j] = float32(i*(j%7)) * 0.25
			if i > 0 { // the first is left out of an average of the last 3
				want[j] += float64(m.Params().Flat[j]) / 3
			}
		}
		state := CheckpointState{Step: step, Loss: float64(step), WorldSize: 1, Config: cfg}
		if _, err := saveCheckpoint(ctx, st, m, opt, state); err != nil {
			t.Fatal(err)
		}
	}
	prefix, err := AverageCheckpoints(ctx, st, "run", 3, "run-avg3")
	if err != nil {
		t.Fatal(err)
	}
	if prefix != CheckpointPrefix("run-avg3", 400) {
		t.Fatalf("averaged checkpoint at %s, want %s", prefix, CheckpointPrefix("run-avg3", 400))
	}
	ck, err := LoadCheckpoint(ctx, st, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for j, v := range ck.Model.Params().Flat {
		if d := float64(v) - want[j]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("weight %d = %g, want the mean %g", j, v, want[j])
		}
	}
	if ck.State.Step != 400 || ck.State.Loss != 400 || ck.State.Config.JobID != "run-avg3" || len(ck.State.AveragedFrom) != 3 ||
		ck.State.AveragedFrom[0] != CheckpointPrefix("run", 200) {
		t.Errorf("state %+v", ck.State)
	}
	if latest, err := LatestCheckpoint(ctx, st, "run-avg3"); err != nil || latest != prefix {
		t.Errorf("latest of run-avg3: %s, %v", latest, err)
	}

	other := fixture.TinyModel(t, langs, 2, 2) // another codebook
	if _, err := saveCheckpoint(ctx, st, other, opt, CheckpointState{Step: 500, WorldSize: 1, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		job, to string
		n       int
		want    string
	}{
		{"mixed runs", "run", "run-avg2", 2, "another model configuration or codebook"},
		{"too many", "run", "x", 9, "has 5 committed checkpoints"},
		{"zero", "run", "x", 0, "want 1..100"},
		{"onto itself", "run", "run", 2, "other than"},
		{"bad name", "run", "a/b", 2, "job id"},
		{"no such job", "none", "x", 1, "no committed checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := AverageCheckpoints(ctx, st, tc.job, tc.n, tc.to); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
	if _, err := LatestCheckpoint(ctx, st, "run-avg2"); err == nil {
		t.Error("a refused average left a checkpoint behind")
	}
}

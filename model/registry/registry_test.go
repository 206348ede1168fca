package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"babelfish.dev/babelfish/internal/fixture"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/objstore"
)

var shared *testenv.MinIO

func TestMain(m *testing.M) {
	testenv.RunWithMinIO(m, "registry", func(mi *testenv.MinIO) { shared = mi })
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newStore returns a client on a fresh bucket of the shared MinIO.
func newStore(t *testing.T) *objstore.Client { return fixture.Store(t, shared) }

// tinyModel is a randomly initialised model; seed changes its weights.
func tinyModel(t *testing.T, seed uint64) *model.Model {
	return fixture.TinyModel(t, []string{"de", "en", "fr"}, seed, 2)
}

// writeCheckpoint commits a checkpoint as the trainer lays it out.
func writeCheckpoint(t *testing.T, st *objstore.Client, job string, step int64, m *model.Model, eval map[string]float64) string {
	return fixture.WriteCheckpoint(t, st, job, step, m, map[string]any{"loss": 1.5, "eval": eval})
}

func TestPromoteListRollback(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	reg, err := New(st, "s2ut", WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Current(ctx); !errors.Is(err, ErrNoCurrent) {
		t.Fatalf("Current before any promotion: %v, want ErrNoCurrent", err)
	}
	var ckpts []string
	for i := range 3 {
		ckpts = append(ckpts, writeCheckpoint(t, st, "job1", int64(10*(i+1)), tinyModel(t, uint64(i+1)), map[string]float64{"concept_accuracy": 0.1 * float64(i+1)}))
	}
	for i, ck := range ckpts {
		rel, err := reg.Promote(ctx, ck, WithNote(fmt.Sprintf("n%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if rel.Number != int64(i+1) || rel.Step != int64(10*(i+1)) || rel.Job != "job1" || rel.Name() != fmt.Sprintf("s2ut/releases/%d", i+1) {
			t.Fatalf("release %d: %+v", i, rel)
		}
		if rel.Metrics["concept_accuracy"] != 0.1*float64(i+1) || strings.Join(rel.Languages, ",") != "de,en,fr" {
			t.Fatalf("release %d metrics/languages: %+v", i, rel)
		}
		cur, err := reg.Current(ctx)
		if err != nil || cur.Release != rel.Number || cur.Previous != int64(i) || cur.Reason != "promote" {
			t.Fatalf("current after promotion %d: %+v, %v", i, cur, err)
		}
	}
	list, err := reg.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("List: %d releases, %v", len(list), err)
	}
	// The loaded weights are the checkpoint's, bit for bit.
	m, err := reg.Load(ctx, list[1])
	if err != nil {
		t.Fatal(err)
	}
	var got, want bytes.Buffer
	_ = m.Save(&got)
	_ = tinyModel(t, 2).Save(&want)
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("release 2 weights differ from checkpoint 2's")
	}

	rel, err := reg.Rollback(ctx, 0)
	if err != nil || rel.Number != 2 {
		t.Fatalf("Rollback(0) from 3: %+v, %v; want release 2", rel, err)
	}
	if rel, err = reg.Rollback(ctx, 0); err != nil || rel.Number != 1 {
		t.Fatalf("Rollback(0) from 2: %+v, %v; want release 1", rel, err)
	}
	if _, err = reg.Rollback(ctx, 0); err == nil || !strings.Contains(err.Error(), "oldest") {
		t.Fatalf("Rollback from the oldest: %v", err)
	}
	if rel, err = reg.Rollback(ctx, 3); err != nil || rel.Number != 3 {
		t.Fatalf("Rollback(3): %+v, %v", rel, err)
	}
	if _, err = reg.Rollback(ctx, 9); !errors.Is(err, ErrNoRelease) {
		t.Fatalf("Rollback(9): %v, want ErrNoRelease", err)
	}
	cur, _ := reg.Current(ctx)
	if cur.Release != 3 || cur.Reason != "rollback" {
		t.Fatalf("current after failed rollback: %+v", cur)
	}
}

func TestPromoteWithMetrics(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	reg, err := New(st, "metrics", WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ck := writeCheckpoint(t, st, "job2", 5, tinyModel(t, 1), map[string]float64{"concept_accuracy": 0.5, "loss": 2})
	for _, tc := range []struct {
		name string
		opts []PromoteOption
		want map[string]float64
	}{
		{"checkpoint's own", nil, map[string]float64{"concept_accuracy": 0.5, "loss": 2}},
		{"stored eval wins and adds", []PromoteOption{WithMetrics(map[string]float64{"concept_accuracy": 0.9, "mcd_db": 2.8})},
			map[string]float64{"concept_accuracy": 0.9, "loss": 2, "mcd_db": 2.8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel, err := reg.Promote(ctx, ck, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := reg.Get(ctx, rel.Number)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(rel.Metrics, tc.want) || !maps.Equal(stored.Metrics, tc.want) {
				t.Fatalf("metrics returned %v, stored %v; want %v", rel.Metrics, stored.Metrics, tc.want)
			}
		})
	}
}

// Bad checkpoints and corrupt releases change nothing.
func TestPromoteRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	reg, err := New(st, "s2ut", WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	good := writeCheckpoint(t, st, "j", 1, tinyModel(t, 1), nil)
	if _, err := reg.Promote(ctx, good); err != nil {
		t.Fatal(err)
	}

	// A half-written checkpoint: parts but no manifest.
	w, _ := st.NewArtifact("checkpoints/j/000000000002/")
	var b bytes.Buffer
	_ = tinyModel(t, 2).Save(&b)
	if _, err := w.Put(ctx, PartModel, b.Bytes(), nil); err != nil {
		t.Fatal(err)
	}
	// A committed checkpoint whose weights are not a model.
	w3, _ := st.NewArtifact("checkpoints/j/000000000003/")
	if _, err := w3.Put(ctx, PartModel, []byte("not a model"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w3.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// A committed checkpoint with no weights.
	w4, _ := st.NewArtifact("checkpoints/j/000000000004/")
	if _, err := w4.Put(ctx, "state.json", []byte("{}"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w4.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, prefix string
		want         error
		msg          string
	}{
		{"no manifest", "checkpoints/j/000000000002/", objstore.ErrIncomplete, ""},
		{"missing", "checkpoints/j/000000000099/", objstore.ErrIncomplete, ""},
		{"not a model", "checkpoints/j/000000000003/", nil, "model"},
		{"no weights", "checkpoints/j/000000000004/", nil, "no model.bin part"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reg.Promote(ctx, tc.prefix)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Promote(%s) = %v, want %v / %q", tc.prefix, err, tc.want, tc.msg)
			}
			cur, err := reg.Current(ctx)
			if err != nil || cur.Release != 1 {
				t.Fatalf("current moved: %+v, %v", cur, err)
			}
			if list, _ := reg.List(ctx); len(list) != 1 {
				t.Fatalf("%d releases recorded, want 1", len(list))
			}
		})
	}

	// Corrupt the weights of release 2 after promotion: loading and
	// rolling back to it fail on the checksum.
	if _, err := reg.Promote(ctx, writeCheckpoint(t, st, "j", 5, tinyModel(t, 5), nil)); err != nil {
		t.Fatal(err)
	}
	rel2, err := reg.Get(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Rollback(ctx, 1); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(shared.DataDir + "/" + st.Bucket() + "/" + rel2.Artifact + PartModel + "/xl.meta")
	if err != nil {
		t.Fatal(err)
	}
	// MinIO keeps small objects inline in xl.meta: flip a byte of the
	// payload (the model stream starts with its magic).
	i := bytes.Index(raw, b.Bytes()[:8])
	if i < 0 {
		var b5 bytes.Buffer
		_ = tinyModel(t, 5).Save(&b5)
		i = bytes.Index(raw, b5.Bytes()[len(b5.Bytes())-64:])
	}
	if i < 0 {
		t.Fatal("weights not found inline in MinIO's xl.meta")
	}
	raw[i+40] ^= 0xff
	if err := os.WriteFile(shared.DataDir+"/"+st.Bucket()+"/"+rel2.Artifact+PartModel+"/xl.meta", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Load(ctx, rel2); err == nil {
		t.Fatal("Load of corrupt weights succeeded")
	}
	if _, err := reg.Rollback(ctx, 2); err == nil {
		t.Fatal("Rollback to corrupt release succeeded")
	}
	if cur, _ := reg.Current(ctx); cur.Release != 1 {
		t.Fatalf("current moved to %d", cur.Release)
	}
}

// Concurrent promoters never share a release number.
func TestConcurrentPromotions(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	reg, err := New(st, "m", WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	var cks []string
	for i := range n {
		cks = append(cks, writeCheckpoint(t, st, "j", int64(i), tinyModel(t, uint64(i+1)), nil))
	}
	got := make(chan int64, n)
	errs := make(chan error, n)
	for _, ck := range cks {
		go func() {
			rel, err := reg.Promote(ctx, ck)
			errs <- err
			got <- rel.Number
		}()
	}
	seen := map[int64]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[<-got] = true
	}
	if len(seen) != n {
		t.Fatalf("release numbers %v: want %d distinct", seen, n)
	}
	list, err := reg.List(ctx)
	if err != nil || len(list) != n {
		t.Fatalf("List: %d, %v", len(list), err)
	}
	for _, rel := range list {
		if _, err := reg.Load(ctx, rel); err != nil {
			t.Fatalf("%s: %v", rel.Name(), err)
		}
	}
}

func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := newStore(t)
	reg, err := New(st, "m", WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ch := reg.Watch(ctx, 20*time.Millisecond)
	ck := writeCheckpoint(t, st, "j", 1, tinyModel(t, 1), nil)
	for want := int64(1); want <= 2; want++ {
		if _, err := reg.Promote(ctx, ck); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-ch:
			if c.Release != want {
				t.Fatalf("watch sent release %d, want %d", c.Release, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch did not report release %d", want)
		}
	}
	cancel()
	for range ch {
	}
}

func TestModelNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"s2ut", true}, {"a", true}, {"s2ut-v1.2_x", true},
		{"", false}, {"S2UT", false}, {"-a", false}, {"a/b", false}, {"../x", false}, {strings.Repeat("a", 129), false},
	} {
		if err := ValidateModelName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateModelName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestShouldPromote(t *testing.T) {
	nan := func() float64 { var z float64; return z / z }()
	for _, tc := range []struct {
		name      string
		p         Policy
		cand, cur map[string]float64
		want      bool
	}{
		{"no current", Policy{Metric: "acc"}, map[string]float64{"acc": 0.1}, nil, true},
		{"beats", Policy{Metric: "acc"}, map[string]float64{"acc": 0.6}, map[string]float64{"acc": 0.5}, true},
		{"equal is not better", Policy{Metric: "acc"}, map[string]float64{"acc": 0.5}, map[string]float64{"acc": 0.5}, false},
		{"worse", Policy{Metric: "acc"}, map[string]float64{"acc": 0.4}, map[string]float64{"acc": 0.5}, false},
		{"minimize better", Policy{Metric: "mcd", Goal: Minimize}, map[string]float64{"mcd": 6}, map[string]float64{"mcd": 7}, true},
		{"minimize worse", Policy{Metric: "mcd", Goal: Minimize}, map[string]float64{"mcd": 8}, map[string]float64{"mcd": 7}, false},
		{"within margin", Policy{Metric: "acc", MinImprovement: 0.05}, map[string]float64{"acc": 0.54}, map[string]float64{"acc": 0.5}, false},
		{"past margin", Policy{Metric: "acc", MinImprovement: 0.05}, map[string]float64{"acc": 0.56}, map[string]float64{"acc": 0.5}, true},
		{"candidate lacks metric", Policy{Metric: "acc"}, map[string]float64{"loss": 1}, map[string]float64{"acc": 0.5}, false},
		{"candidate NaN", Policy{Metric: "acc"}, map[string]float64{"acc": nan}, nil, false},
		{"current lacks metric", Policy{Metric: "acc"}, map[string]float64{"acc": 0.1}, map[string]float64{}, true},
		{"current NaN", Policy{Metric: "acc"}, map[string]float64{"acc": 0.1}, map[string]float64{"acc": nan}, true},
		{"no metric named", Policy{}, map[string]float64{"acc": 1}, nil, false},
		{"bad goal", Policy{Metric: "acc", Goal: "Up"}, map[string]float64{"acc": 1}, nil, false},
		{"negative margin", Policy{Metric: "acc", MinImprovement: -1}, map[string]float64{"acc": 1}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ShouldPromote(tc.p, tc.cand, tc.cur)
			if d.Promote != tc.want || d.Reason == "" {
				t.Fatalf("ShouldPromote = %+v, want promote=%v with a reason", d, tc.want)
			}
		})
	}
}

// The record is plain JSON with the fields the design names.
func TestReleaseRecordJSON(t *testing.T) {
	b, err := json.Marshal(Release{Format: 1, Model: "m", Number: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"release":3`, `"model":"m"`, `"model_sha256"`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("record %s lacks %s", b, k)
		}
	}
}

package trainer

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"babelfish.dev/babelfish/objstore"
)

// testEvaluate scores the tiny corpus's reference checkpoint: 3 languages,
// numbers 0..2 trained and 3 held out, voices m1 f1 trained and m7 unseen,
// fr->de held out.
func testEvaluate(t *testing.T, st *objstore.Client, ck string) {
	ctx := context.Background()
	var progress strings.Builder
	cfg := EvalConfig{Checkpoint: ck, PerDirection: 0, Seed: 1, Log: quiet(), Progress: &progress}
	rep, err := Evaluate(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every translation of each split: unseen voices 3 phrases x m7 x 6
	// directions; unseen phrases 1 phrase x 3 voices x 6 directions;
	// unseen pairs 3 phrases x 2 voices x fr->de.
	for _, tc := range []struct {
		split   string
		n, dirs int
	}{
		{EvalUnseenVoices, 18, 6},
		{EvalUnseenPhrases, 18, 6},
		{EvalUnseenPairs, 6, 1},
	} {
		s, ok := rep.Split(tc.split)
		if !ok {
			t.Fatalf("report has no split %s: %+v", tc.split, rep.Splits)
		}
		if s.Model.N != tc.n || s.Floor.N != tc.n || s.Copy.N != tc.n || len(s.Directions) != tc.dirs {
			t.Errorf("%s: model/floor/copy over %d/%d/%d translations in %d directions, want %d in %d",
				tc.split, s.Model.N, s.Floor.N, s.Copy.N, len(s.Directions), tc.n, tc.dirs)
		}
		for name, sc := range map[string]Score{"model": s.Model, "floor": s.Floor, "copy": s.Copy} {
			if sc.Acc < 0 || sc.Acc > 1 || sc.Correct > sc.N {
				t.Errorf("%s %s: accuracy %g (%d/%d)", tc.split, name, sc.Acc, sc.Correct, sc.N)
			}
		}
		// The copy baseline always has speech, so an MCD for every item;
		// it speaks the wrong language, so its distortion is far from 0.
		if s.Copy.MCDN != tc.n || !(s.Copy.MCD > 1) {
			t.Errorf("%s copy: MCD %g dB over %d items, want > 1 dB over %d", tc.split, s.Copy.MCD, s.Copy.MCDN, tc.n)
		}
		if s.Floor.MCDN != tc.n || !(s.Floor.MCD > 0) || !(s.Floor.MCD < s.Copy.MCD) {
			t.Errorf("%s floor: MCD %g dB over %d items, want between 0 and the copy baseline's %g", tc.split, s.Floor.MCD, s.Floor.MCDN, s.Copy.MCD)
		}
		t.Logf("%-15s model %s | floor %s | copy %s", tc.split, s.Model, s.Floor, s.Copy)
	}
	if s, _ := rep.Split(EvalUnseenVoices); s.SeenPairs.N != 15 {
		t.Errorf("unseen voices on trained directions: %d translations, want 15 (fr->de is held out)", s.SeenPairs.N)
	}
	if !strings.Contains(progress.String(), "eval") {
		t.Errorf("no progress drawn: %q", progress.String())
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"unseen_voices    model", "unseen_phrases   floor", "unseen_pairs     copy", "fr->de", "by direction", "by target language: de ", "by source language: de "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	// Stored beside the checkpoint, read back the same, with the flat
	// metrics a promotion policy compares.
	prefix, err := SaveEval(ctx, st, rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(prefix, ck+"eval/") {
		t.Errorf("evaluation stored at %s, want under %seval/", prefix, ck)
	}
	back, err := LoadEval(ctx, st, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Metrics(), rep.Metrics()) || back.Step != 20 {
		t.Errorf("stored report differs: %v vs %v", back.Metrics(), rep.Metrics())
	}
	list, err := Evaluations(ctx, st, ck)
	if err != nil || len(list) != 1 || list[0] != prefix {
		t.Errorf("evaluations of %s: %v, %v; want [%s]", ck, list, err, prefix)
	}
	m := rep.Metrics()
	for _, k := range []string{"concept_accuracy", "mcd", "unseen_phrases_concept_accuracy", "unseen_pairs_copy_mcd", "unseen_voices_floor_concept_accuracy", "unseen_voices_min_direction_accuracy"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics lack %s: %v", k, m)
		}
	}
	// The stored evaluation does not look like a checkpoint.
	if latest, err := LatestCheckpoint(ctx, st, "ref2"); err != nil || latest != ck {
		t.Errorf("latest checkpoint %q, %v: want %s", latest, err, ck)
	}

	// A draw of one per direction is a subset of the same size per
	// direction, and a restriction to two languages keeps their directions.
	one, err := Evaluate(ctx, st, EvalConfig{Checkpoint: ck, PerDirection: 1, Languages: []string{"de", "en"}, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := one.Split(EvalUnseenVoices); s.Model.N != 2 || len(s.Directions) != 2 {
		t.Errorf("de,en with 1 per direction: %d translations in %d directions, want 2 in 2", s.Model.N, len(s.Directions))
	}
	if _, ok := one.Split(EvalUnseenPairs); ok {
		t.Errorf("de,en has no held-out pair, but the report has an unseen-pairs split")
	}
	if _, ok := one.Split(EvalSeenVoices); ok {
		t.Errorf("SeenPerDirection 0, but the report has a seen-voices split")
	}
	// Asked for, the training voices' split scores trained directions only.
	seen, err := Evaluate(ctx, st, EvalConfig{Checkpoint: ck, PerDirection: 1, SeenPerDirection: 2, Languages: []string{"de", "en"}, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := seen.Split(EvalSeenVoices); !ok || s.Model.N != 4 || s.Floor.N != 4 || len(s.Directions) != 2 {
		t.Errorf("seen voices, 2 per direction over de,en: %d translations in %d directions (split present: %v), want 4 in 2", s.Model.N, len(s.Directions), ok)
	}
	if a, b := EvalPrefix(ck, one.config()), EvalPrefix(ck, seen.config()); a == b {
		t.Errorf("evaluations with and without seen voices share the prefix %s", a)
	}

	for _, tc := range []struct {
		name string
		cfg  EvalConfig
		want string
	}{
		{"no checkpoint", EvalConfig{}, "EvalConfig.Checkpoint is empty"},
		{"missing checkpoint", EvalConfig{Checkpoint: CheckpointPrefix("ref2", 999)}, "000000000999"},
		{"unknown language", EvalConfig{Checkpoint: ck, Languages: []string{"de", "xx"}}, `unknown language "xx"`},
		{"one language", EvalConfig{Checkpoint: ck, Languages: []string{"de"}}, "at least 2 languages"},
		{"missing dataset", EvalConfig{Checkpoint: ck, Dataset: "nope"}, "no dataset"},
		{"missing version", EvalConfig{Checkpoint: ck, DatasetVersion: "v9"}, "v9"},
		{"negative per direction", EvalConfig{Checkpoint: ck, PerDirection: -1}, "PerDirection"},
		{"negative seen per direction", EvalConfig{Checkpoint: ck, SeenPerDirection: -1}, "SeenPerDirection"},
		{"huge beam", EvalConfig{Checkpoint: ck, Beam: 1000}, "Beam"},
		{"unknown vocoder", EvalConfig{Checkpoint: ck, Vocoder: "wavenet"}, `EvalConfig.Vocoder: vocoder "wavenet"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Log = quiet()
			_, err := Evaluate(ctx, st, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want one that mentions %q", err, tc.want)
			}
		})
	}
	if _, err := LoadEval(ctx, st, ck+"eval/none/"); !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, objstore.ErrIncomplete) {
		t.Errorf("loading a missing evaluation: %v, want not found", err)
	}
}

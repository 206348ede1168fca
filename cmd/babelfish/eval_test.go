package main

import (
	"strings"
	"testing"

	"babelfish.dev/babelfish/internal/testenv"
)

// TestEvalCommand runs the researcher's path on a real MinIO: build a tiny
// corpus, train a tiny model for a few steps, evaluate its checkpoint, and
// find the stored evaluation printed again without compute.
func TestEvalCommand(t *testing.T) {
	// Flag errors come before any connection.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eval"}, "give --job"},
		{[]string{"eval", "--job", "j", "--checkpoint", "checkpoints/j/000000000001/"}, "leave out --job"},
		{[]string{"eval", "--job", "j", "--step", "-3"}, "--step -3"},
	} {
		if _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one with %q", tc.args, err, tc.want)
		}
	}

	mi := testenv.MinIOForTest(t)
	t.Setenv("BABELFISH_S3_ENDPOINT", mi.Endpoint)
	t.Setenv("BABELFISH_S3_ACCESS_KEY", mi.AccessKey)
	t.Setenv("BABELFISH_S3_SECRET_KEY", mi.SecretKey)
	if _, err := run(t, "dataset", "build", "--name", "tiny", "--version", "v1", "--languages", "de,en",
		"--categories", "num", "--number-max", "2", "--variants", "m1,f1,m7", "--unseen-voices", "m7",
		"--speeds", "170", "--pitches", "50", "--unseen-phrases", "num:2", "--shard-size", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "eval", "--job", "none"); err == nil || !strings.Contains(err.Error(), "no committed checkpoint") {
		t.Fatalf("eval of a job with no checkpoint: %v", err)
	}
	if out, err := run(t, "trainer", "--job", "tiny-eval", "--dataset", "tiny", "--dataset-version", "v1", "--steps", "4",
		"--global-batch", "8", "--enc", "16", "--context", "8", "--dec", "8", "--units", "8", "--segments", "4",
		"--checkpoint-every", "0", "--log-every", "2"); err != nil {
		t.Fatalf("trainer: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--step", "3"}, "000000000003"},
		{[]string{"--langs", "de,xx"}, `unknown language "xx"`},
		{[]string{"--version", "v9"}, `no version "v9"`},
	} {
		args := append([]string{"eval", "--job", "tiny-eval"}, tc.args...)
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one with %q", args, err, tc.want)
		}
	}
	out, err := run(t, "eval", "--job", "tiny-eval", "--per-dir", "0")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, out)
	}
	for _, want := range []string{"step 4", "unseen_voices    model", "unseen_voices    floor", "unseen_voices    copy",
		"unseen_phrases   model", "by direction", "evaluation stored"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
	again, err := run(t, "eval", "--checkpoint", "checkpoints/tiny-eval/000000000004", "--per-dir", "0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"already stored", `"concept_accuracy"`, `"unseen_phrases_floor_mcd"`} {
		if !strings.Contains(again, want) {
			t.Errorf("second eval lacks %q:\n%s", want, again)
		}
	}
	// Promoting the evaluated checkpoint records its metrics in the release.
	rel, err := run(t, "promote", "--model", "tiny", "--job", "tiny-eval")
	if err != nil {
		t.Fatalf("promote: %v\n%s", err, rel)
	}
	if !strings.Contains(rel, "concept_accuracy=") {
		t.Errorf("the release records no eval metrics:\n%s", rel)
	}

	// The averaged checkpoint of the run's last one is a checkpoint eval
	// reads, here heard through the loops vocoder.
	if _, err := run(t, "average", "--job", "tiny-eval", "--last", "2"); err == nil || !strings.Contains(err.Error(), "has 1 committed checkpoints") {
		t.Errorf("average of more checkpoints than the job has: %v", err)
	}
	if out, err := run(t, "average", "--job", "tiny-eval", "--last", "1"); err != nil || !strings.Contains(out, "checkpoints/tiny-eval-avg1/000000000004/") {
		t.Fatalf("average: %v\n%s", err, out)
	}
	out, err = run(t, "eval", "--job", "tiny-eval-avg1", "--per-dir", "1", "--vocoder", "loops", "--no-save")
	if err != nil || !strings.Contains(out, "vocoder loops") || !strings.Contains(out, "unseen_voices    floor") {
		t.Fatalf("eval of the average through loops: %v\n%s", err, out)
	}
}

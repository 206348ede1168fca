package main

import (
	"math"
	"slices"
	"strings"
	"testing"

	"babelfish.dev/babelfish/objstore"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name      string
		q         float64
		prev, cur map[float64]float64
		want      float64
		wantNaN   bool
	}{
		{"no requests", 0.99, nil, map[float64]float64{0.1: 0, inf: 0}, 0, true},
		{"all in the first bucket", 0.99, nil, map[float64]float64{0.1: 100, 1: 100, inf: 100}, 0.099, false},
		{"between polls only", 0.5, map[float64]float64{0.1: 50, 1: 50, inf: 50}, map[float64]float64{0.1: 50, 1: 150, inf: 150}, 0.55, false},
		{"past the last bound", 0.99, nil, map[float64]float64{0.1: 0, 1: 0, inf: 10}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := tt.prev
			if prev == nil {
				prev = map[float64]float64{}
			}
			got := quantile(tt.q, prev, tt.cur)
			if tt.wantNaN {
				if !math.IsNaN(got) {
					t.Fatalf("quantile = %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("quantile = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWorkerBaseEnv(t *testing.T) {
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.Bucket, cfg.AccessKey, cfg.SecretKey = "127.0.0.1:9000", "b", "ak", "sk"
	env := workerBaseEnv([]string{"PATH=/bin", "BABELFISH_S3_ENDPOINT=elsewhere:1", "BABELFISH_S3_SECRET_KEY=old"}, cfg)
	for _, want := range []string{"PATH=/bin", "BABELFISH_S3_ENDPOINT=127.0.0.1:9000", "BABELFISH_S3_BUCKET=b",
		"BABELFISH_S3_ACCESS_KEY=ak", "BABELFISH_S3_SECRET_KEY=sk", "BABELFISH_S3_TLS=false", "BABELFISH_S3_MAX_RETRIES=6"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %v", want, env)
		}
	}
	for _, kv := range env {
		if strings.Contains(kv, "elsewhere") || strings.HasSuffix(kv, "=old") {
			t.Errorf("env keeps the caller's store: %s", kv)
		}
	}
}

func TestUpRefusals(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown fake machine", []string{"up", "--fake-gpus", "dgx1", "--state-dir", t.TempDir()}, `--fake-gpus "dgx1": want one of [dgxa100 dgxh100]`},
		{"state dir in use", []string{"up", "--fake-gpus", "dgxa100", "--state-dir", dir}, "is in use by another `babelfish up`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := run(t, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	unlock()
}

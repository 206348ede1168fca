package model

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/units"
)

// translationHashes are SHA-256 prefixes of every output sample of a
// default-shape model with random weights translating six speech-like
// clips, one at a time and as one batch, with each vocoder (in that
// order: Griffin-Lim alone, batched, loops alone, batched).
func translationHashes(t *testing.T) []string {
	t.Helper()
	langs := []string{"de", "en", "fr"}
	cfg := DefaultConfig(langs)
	rng := rand.New(rand.NewPCG(5, 1))
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	for i := range cb.Centroids {
		cb.Centroids[i] = -6 + 4*rng.Float32()
	}
	m, err := New(cfg, cb)
	if err != nil {
		t.Fatal(err)
	}
	// Random weights end an answer at once: mute the end marker so that
	// every input speaks up to MaxSeconds.
	ub, _ := m.Params().Get("dec.unit.b")
	ub.Data[cfg.Units] = -1e4
	var ins []Input
	for i := range 6 {
		x := make([]float32, 8000+i*3001)
		for j := range x {
			tt := float64(j) / 16000
			x[j] = float32(0.3 * math.Max(0, math.Sin(2*math.Pi*3*tt)) * math.Sin(2*math.Pi*(120+float64(i)*20)*tt))
		}
		ins = append(ins, Input{Audio: audio.Clip{Rate: 16000, Samples: x}, TargetLang: langs[i%3]})
	}
	var parts []string
	for _, voc := range []string{VocoderGriffinLim, VocoderLoops} {
		for _, batch := range []int{1, len(ins)} {
			h := sha256.New()
			for i := 0; i < len(ins); i += batch {
				outs, err := m.Translate(context.Background(), ins[i:i+batch], DecodeOptions{MaxSeconds: 0.6, Vocoder: voc})
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range outs {
					for _, v := range o.Audio.Samples {
						binary.Write(h, binary.LittleEndian, math.Float32bits(v))
					}
				}
			}
			parts = append(parts, fmt.Sprintf("%s/batch%d=%x", voc, batch, h.Sum(nil)[:12]))
		}
	}
	return parts
}

// The vector kernels change no output: a translation with them hashes as
// the same translation in a child process that runs the portable Go forms
// (GODEBUG turning AVX2 and FMA off), and batched outputs equal those of
// inputs alone.
func TestTranslationSameBitsWithoutVectorKernels(t *testing.T) {
	const child = "BABELFISH_PORTABLE_CHILD"
	hashes := translationHashes(t)
	got := strings.Join(hashes, " ")
	if os.Getenv(child) == "1" {
		fmt.Println("translation-hash", got)
		return
	}
	for i := 0; i < len(hashes); i += 2 {
		if a, b := hashes[i][strings.IndexByte(hashes[i], '=')+1:], hashes[i+1][strings.IndexByte(hashes[i+1], '=')+1:]; a != b {
			t.Errorf("batched outputs differ from outputs alone: %s, %s", hashes[i], hashes[i+1])
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTranslationSameBitsWithoutVectorKernels$", "-test.count=1")
	cmd.Env = append(os.Environ(), child+"=1", "GODEBUG=cpu.avx2=off,cpu.fma=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("portable child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if h, ok := strings.CutPrefix(line, "translation-hash "); ok {
			if h != got {
				t.Fatalf("outputs differ:\n%s with the vector kernels,\n%s with the portable code", got, h)
			}
			return
		}
	}
	t.Fatalf("portable child printed no hash:\n%s", out)
}

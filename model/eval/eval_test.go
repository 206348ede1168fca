package eval

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/model/features"
)

func randSpec(frames, bins int, seed uint64) audio.Spectrogram {
	rng := rand.New(rand.NewPCG(seed, 5))
	s := audio.Spectrogram{Frames: frames, Bins: bins, Data: make([]float32, frames*bins)}
	for i := range s.Data {
		s.Data[i] = float32(rng.NormFloat64()*2 - 5)
	}
	return s
}

// stretch repeats every frame n times.
func stretch(s audio.Spectrogram, n int) audio.Spectrogram {
	out := audio.Spectrogram{Bins: s.Bins}
	for t := range s.Frames {
		for range n {
			out.Data = append(out.Data, s.Row(t)...)
			out.Frames++
		}
	}
	return out
}

func TestDTW(t *testing.T) {
	a := randSpec(40, 13, 1)
	b := randSpec(40, 13, 2)
	for _, tc := range []struct {
		name     string
		x, y     audio.Spectrogram
		zero     bool
		minSteps int
	}{
		{"identical", a, a, true, 40},
		{"stretched copy", a, stretch(a, 2), true, 80},
		{"different", a, b, false, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, n := DTW(tc.x, tc.y)
			if tc.zero != (d == 0) {
				t.Errorf("DTW = %g, want zero: %v", d, tc.zero)
			}
			if n < tc.minSteps {
				t.Errorf("path of %d steps, want >= %d", n, tc.minSteps)
			}
			if d2, _ := DTW(tc.y, tc.x); math.Abs(d2-d) > 1e-9 {
				t.Errorf("DTW not symmetric: %g vs %g", d, d2)
			}
		})
	}
	if d, _ := DTW(a, audio.Spectrogram{Bins: 13}); !math.IsInf(d, 1) {
		t.Errorf("DTW against nothing = %g, want +Inf", d)
	}
}

func TestMCD(t *testing.T) {
	a := randSpec(50, 80, 3)
	louder := audio.Spectrogram{Frames: a.Frames, Bins: a.Bins, Data: make([]float32, len(a.Data))}
	for i, v := range a.Data {
		louder.Data[i] = v + 3 // a gain only moves c0, which MCD leaves out
	}
	for _, tc := range []struct {
		name   string
		x, y   audio.Spectrogram
		lo, hi float64
	}{
		{"identical", a, a, 0, 0},
		{"gain only", a, louder, 0, 1e-4},
		{"unrelated", a, randSpec(50, 80, 4), 1, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MCD(tc.x, tc.y); got < tc.lo || got > tc.hi {
				t.Errorf("MCD = %g dB, want %g..%g", got, tc.lo, tc.hi)
			}
		})
	}
}

// TestTemplatesOnSpeech checks the evaluator on real speech: the same
// phrase in another voice is nearer to its own clean template than other
// phrases are.
func TestTemplatesOnSpeech(t *testing.T) {
	bin, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	es := corpus.Espeak{Path: bin}
	front, err := features.NewFrontend(features.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	say := func(text string, sp corpus.Speaker) audio.Spectrogram {
		wav, err := es.Say(ctx, "en-us", sp, text)
		if err != nil {
			t.Fatal(err)
		}
		c, err := audio.DecodeWAV(fixStreamedWAV(wav), audio.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		lm, err := front.LogMel(c)
		if err != nil {
			t.Fatal(err)
		}
		return lm
	}
	phrases := []string{"seventeen", "seventy", "Monday", "January", "Canada", "yesterday"}
	tm := NewTemplates()
	canon := corpus.Speaker{Speed: 165, Pitch: 50}
	refs := map[string]audio.Spectrogram{}
	for _, p := range phrases {
		refs[p] = say(p, canon)
		if err := tm.Add("en", p, refs[p]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tm.Add("en", phrases[0], refs[phrases[0]]); err == nil {
		t.Error("adding a template twice gave no error")
	}
	for _, voice := range []corpus.Speaker{{Variant: "m3", Speed: 150, Pitch: 40}, {Variant: "f2", Speed: 180, Pitch: 60}} {
		for _, p := range phrases {
			lm := say(p, voice)
			got, _, err := tm.Nearest("en", lm)
			if err != nil {
				t.Fatal(err)
			}
			if got != p {
				t.Errorf("%q in voice %s matched template %q", p, voice, got)
			}
			// Concept matching separates phrases: another phrase's clean
			// rendering is farther than this phrase's.
			ceps := Cepstra(lm, MatchOrder)
			same, _ := DTW(Cepstra(refs[p], MatchOrder), ceps)
			for _, q := range phrases {
				if d, _ := DTW(Cepstra(refs[q], MatchOrder), ceps); q != p && d <= same {
					t.Errorf("%q in voice %s: DTW distance to %q (%.3f) <= to its own reference (%.3f)", p, voice, q, d, same)
				}
			}
			if mcd := MCD(refs[p], lm); mcd < 2 || mcd > 25 {
				t.Errorf("%q in voice %s: MCD to its reference %.2f dB, want 2..25 (a voice change, not noise)", p, voice, mcd)
			}
		}
	}
	if _, _, err := tm.Nearest("xx", refs[phrases[0]]); err == nil || !strings.Contains(err.Error(), "en") {
		t.Errorf("unknown language: err = %v, want one listing en", err)
	}
}

func TestTallyAndReport(t *testing.T) {
	r := Report{}
	for i, ok := range []bool{true, true, false, true} {
		r.Get("unseen voices", "model").Add(ok, float64(i))
	}
	r.Get("unseen voices", "copy").Add(false, math.NaN())
	m := r.Get("unseen voices", "model")
	if m.Accuracy() != 0.75 || m.MeanMCD() != 1.5 {
		t.Errorf("accuracy %g MCD %g, want 0.75 and 1.5", m.Accuracy(), m.MeanMCD())
	}
	if c := r.Get("unseen voices", "copy"); c.MCDN != 0 || !math.IsNaN(c.MeanMCD()) {
		t.Errorf("a NaN MCD was counted: %+v", c)
	}
	lines := r.Lines()
	if len(lines) != 2 || !strings.Contains(lines[1], "75.0% (3/4)") {
		t.Errorf("report lines %q", lines)
	}
	var all Tally
	all.Merge(*m)
	all.Merge(*m)
	if all.N != 8 || all.Correct != 6 {
		t.Errorf("merged tally %+v", all)
	}
}

// fixStreamedWAV patches the RIFF and data chunk sizes of a WAV written to a
// pipe (espeak-ng --stdout declares 0x7ffff000 bytes) to the bytes present.
func fixStreamedWAV(b []byte) []byte {
	if len(b) < 44 || string(b[:4]) != "RIFF" {
		return b
	}
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	if string(b[36:40]) == "data" {
		binary.LittleEndian.PutUint32(b[40:], uint32(len(b)-44))
	}
	return b
}

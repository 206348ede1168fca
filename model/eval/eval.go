package eval

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/features"
)

// MCDConstant turns a Euclidean distance between natural-log mel cepstra
// into decibels: 10*sqrt(2)/ln(10).
var MCDConstant = 10 * math.Sqrt2 / math.Ln10

// DTW aligns a and b (frames x dims, same dims) with steps (1,0), (0,1) and
// (1,1) and Euclidean frame distance, and returns the summed distance along
// the cheapest path divided by the path's length, and that length.
// Either side empty gives +Inf.
func DTW(a, b audio.Spectrogram) (float64, int) {
	n, m := a.Frames, b.Frames
	if n == 0 || m == 0 || a.Bins != b.Bins {
		return math.Inf(1), 0
	}
	prev := make([]float64, m)
	cur := make([]float64, m)
	prevLen := make([]int32, m)
	curLen := make([]int32, m)
	for i := range n {
		ai := a.Row(i)
		for j := range m {
			d := frameDist(ai, b.Row(j))
			switch {
			case i == 0 && j == 0:
				cur[j], curLen[j] = d, 1
			case i == 0:
				cur[j], curLen[j] = cur[j-1]+d, curLen[j-1]+1
			case j == 0:
				cur[j], curLen[j] = prev[j]+d, prevLen[j]+1
			default:
				best, bl := prev[j-1], prevLen[j-1]
				if prev[j] < best {
					best, bl = prev[j], prevLen[j]
				}
				if cur[j-1] < best {
					best, bl = cur[j-1], curLen[j-1]
				}
				cur[j], curLen[j] = best+d, bl+1
			}
		}
		prev, cur = cur, prev
		prevLen, curLen = curLen, prevLen
	}
	return prev[m-1] / float64(prevLen[m-1]), int(prevLen[m-1])
}

func frameDist(x, y []float32) float64 {
	var s float32
	for k, v := range x {
		d := v - y[k]
		s += d * d
	}
	return math.Sqrt(float64(s))
}

// Cepstra returns c1..c(order-1) of a natural-log power mel spectrogram
// (c0, the loudness, left out), the features DTW matching and MCD use.
func Cepstra(logMel audio.Spectrogram, order int) audio.Spectrogram {
	c := features.MelCepstrum(logMel, order)
	out := audio.Spectrogram{Frames: c.Frames, Bins: c.Bins - 1, Data: make([]float32, c.Frames*(c.Bins-1))}
	for t := range c.Frames {
		copy(out.Row(t), c.Row(t)[1:])
	}
	return out
}

// MCDOrder is the cepstral order MCD uses (c1..c24).
const MCDOrder = 25

// MCD is the mel-cepstral distortion in dB between two log-mel
// spectrograms after DTW alignment on c1..c24: the mean over the path of
// MCDConstant times the Euclidean cepstral distance.
func MCD(ref, out audio.Spectrogram) float64 {
	d, _ := DTW(Cepstra(ref, MCDOrder), Cepstra(out, MCDOrder))
	return MCDConstant * d
}

// MatchOrder is the cepstral order concept matching uses (c1..c12).
const MatchOrder = 13

// Template is one clean rendering of a phrase in one language.
type Template struct {
	Phrase string
	ceps   audio.Spectrogram
}

// Templates holds clean renderings of every phrase of each language.
type Templates struct {
	byLang map[string][]Template
}

// NewTemplates returns an empty template set.
func NewTemplates() *Templates { return &Templates{byLang: map[string][]Template{}} }

// Add adds the clean rendering (trimmed log-mel) of phrase in lang.
func (t *Templates) Add(lang, phrase string, logMel audio.Spectrogram) error {
	if logMel.Frames == 0 {
		return fmt.Errorf("eval: template %s/%s has no frames", lang, phrase)
	}
	for _, x := range t.byLang[lang] {
		if x.Phrase == phrase {
			return fmt.Errorf("eval: template %s/%s added twice", lang, phrase)
		}
	}
	t.byLang[lang] = append(t.byLang[lang], Template{Phrase: phrase, ceps: Cepstra(logMel, MatchOrder)})
	return nil
}

// Languages lists the languages with templates, sorted.
func (t *Templates) Languages() []string {
	var out []string
	for l := range t.byLang {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Count is the number of templates of lang.
func (t *Templates) Count(lang string) int { return len(t.byLang[lang]) }

// ErrNoTemplates is returned for a language with no templates.
var ErrNoTemplates = errors.New("eval: no templates for language")

// Nearest returns the phrase whose template in lang is nearest to logMel by
// length-normalised DTW on mel cepstra, and its distance.
func (t *Templates) Nearest(lang string, logMel audio.Spectrogram) (string, float64, error) {
	ts := t.byLang[lang]
	if len(ts) == 0 {
		return "", 0, fmt.Errorf("%w %q (have %s)", ErrNoTemplates, lang, strings.Join(t.Languages(), " "))
	}
	c := Cepstra(logMel, MatchOrder)
	best, bd := "", math.Inf(1)
	for _, x := range ts {
		if d, _ := DTW(c, x.ceps); d < bd {
			best, bd = x.Phrase, d
		}
	}
	return best, bd, nil
}

// Tally accumulates concept accuracy and MCD for one system on one split.
type Tally struct {
	N, Correct int
	MCDSum     float64
	MCDN       int
}

// Add records one output: whether its concept was right, and its MCD
// (NaN for none).
func (t *Tally) Add(correct bool, mcd float64) {
	t.N++
	if correct {
		t.Correct++
	}
	if !math.IsNaN(mcd) && !math.IsInf(mcd, 0) {
		t.MCDSum += mcd
		t.MCDN++
	}
}

// Merge adds o's counts to t.
func (t *Tally) Merge(o Tally) {
	t.N += o.N
	t.Correct += o.Correct
	t.MCDSum += o.MCDSum
	t.MCDN += o.MCDN
}

// Accuracy is the fraction correct (NaN for no outputs).
func (t Tally) Accuracy() float64 {
	if t.N == 0 {
		return math.NaN()
	}
	return float64(t.Correct) / float64(t.N)
}

// MeanMCD is the mean MCD in dB (NaN for none).
func (t Tally) MeanMCD() float64 {
	if t.MCDN == 0 {
		return math.NaN()
	}
	return t.MCDSum / float64(t.MCDN)
}

// String is "acc 93.1% (1234/1325) MCD 6.12 dB".
func (t Tally) String() string {
	return fmt.Sprintf("acc %5.1f%% (%d/%d) MCD %5.2f dB", 100*t.Accuracy(), t.Correct, t.N, t.MeanMCD())
}

// Report is tallies keyed by split and then by system ("model", "floor",
// "copy").
type Report map[string]map[string]*Tally

// Get returns the tally of split and system, creating it.
func (r Report) Get(split, system string) *Tally {
	if r[split] == nil {
		r[split] = map[string]*Tally{}
	}
	if r[split][system] == nil {
		r[split][system] = &Tally{}
	}
	return r[split][system]
}

// Lines renders the report, one line per split and system, in sorted order.
func (r Report) Lines() []string {
	var out []string
	splits := make([]string, 0, len(r))
	for s := range r {
		splits = append(splits, s)
	}
	sort.Strings(splits)
	for _, s := range splits {
		systems := make([]string, 0, len(r[s]))
		for k := range r[s] {
			systems = append(systems, k)
		}
		slices.Sort(systems)
		for _, k := range systems {
			out = append(out, fmt.Sprintf("%-22s %-6s %s", s, k, r[s][k]))
		}
	}
	return out
}

package vad

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

const rate = 16000

// signal builds audio from (seconds, loud) spans: loud spans are a 300 Hz
// tone at -12 dBFS, quiet ones low noise at about -60 dBFS.
func signal(spans ...[2]float64) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	var x []float32
	for _, sp := range spans {
		n := int(sp[0] * rate)
		for i := range n {
			if sp[1] != 0 {
				x = append(x, float32(0.35*math.Sin(2*math.Pi*300*float64(i)/rate)))
			} else {
				x = append(x, float32(0.001*(rng.Float64()*2-1)))
			}
		}
	}
	return x
}

func bounds(segs []Segment) [][2]float64 {
	var out [][2]float64
	for _, s := range segs {
		out = append(out, [2]float64{float64(s.Start) / rate, float64(s.End) / rate})
	}
	return out
}

func TestSegments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		spans [][2]float64
		want  [][2]float64 // seconds
	}{
		{"silence only", Config{}, [][2]float64{{2, 0}}, nil},
		{"one phrase", Config{}, [][2]float64{{0.5, 0}, {0.4, 1}, {0.5, 0}}, [][2]float64{{0.4, 1.0}}},
		{"two phrases", Config{}, [][2]float64{{0.5, 0}, {0.4, 1}, {0.5, 0}, {0.3, 1}, {0.5, 0}}, [][2]float64{{0.4, 1.0}, {1.3, 1.8}}},
		{"short pause joins", Config{}, [][2]float64{{0.5, 0}, {0.4, 1}, {0.2, 0}, {0.3, 1}, {0.5, 0}}, [][2]float64{{0.4, 1.5}}},
		{"click dropped", Config{}, [][2]float64{{0.5, 0}, {0.04, 1}, {0.5, 0}}, nil},
		{"open at end is flushed", Config{}, [][2]float64{{0.5, 0}, {0.4, 1}}, [][2]float64{{0.4, 0.9}}},
		{"speech from the first sample", Config{}, [][2]float64{{0.4, 1}, {0.5, 0}}, [][2]float64{{0, 0.5}}},
		{"long speech is cut", Config{MaxSegment: time.Second}, [][2]float64{{2.5, 1}, {0.5, 0}}, [][2]float64{{0, 1}, {1, 2}, {2, 2.6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := signal(tc.spans...)
			cfg := tc.cfg
			cfg.Rate = rate
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			segs := append(s.Push(x), s.Flush()...)
			got := bounds(segs)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("segments %v, want %v", got, tc.want)
			}
			for _, sg := range segs {
				if len(sg.Samples) != sg.End-sg.Start {
					t.Fatalf("segment %v holds %d samples", sg, len(sg.Samples))
				}
				for i, v := range sg.Samples {
					if v != x[sg.Start+i] {
						t.Fatalf("segment sample %d differs from the input", i)
					}
				}
			}
		})
	}
}

// Chunking never changes the segments.
func TestChunkingInvariant(t *testing.T) {
	x := signal([2]float64{0.3, 0}, [2]float64{0.5, 1}, [2]float64{0.6, 0}, [2]float64{0.2, 1}, [2]float64{0.1, 0}, [2]float64{0.7, 1})
	whole, _ := New(Config{Rate: rate})
	want := append(whole.Push(x), whole.Flush()...)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		s, _ := New(Config{Rate: rate})
		var got []Segment
		for i := 0; i < len(x); {
			n := min(len(x)-i, rng.IntN(2000))
			got = append(got, s.Push(x[i:i+n])...)
			i += n
		}
		got = append(got, s.Flush()...)
		if !reflect.DeepEqual(bounds(got), bounds(want)) {
			t.Fatalf("chunked %v, whole %v", bounds(got), bounds(want))
		}
	}
}

// Memory stays bounded over long silence.
func TestBoundedBuffer(t *testing.T) {
	s, _ := New(Config{Rate: rate})
	for range 100 {
		s.Push(make([]float32, rate))
	}
	if len(s.buf) > s.pad+s.frame {
		t.Fatalf("buffer holds %d samples after silence, want <= %d", len(s.buf), s.pad+s.frame)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {Rate: -1}, {Rate: rate, ThresholdDBFS: 3}, {Rate: rate, MinSilence: -time.Second}, {Rate: rate, MaxSegment: time.Millisecond}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

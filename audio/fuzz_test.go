package audio

import (
	"bytes"
	"math"
	"slices"
	"testing"
)

// fuzzLimits are the limits the fuzz target reads under; the invariants
// check that a successful read respects them.
func fuzzLimits() Limits {
	return Limits{MaxBytes: 1 << 20, MaxSeconds: 30, MinRate: 1000, MaxRate: 384000, MaxChannels: 16}
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	odd := [][2]string{{"LIST", "odd"}}
	for _, s := range []wavSpec{
		{tag: tagPCM, channels: 1, rate: 16000, bits: 16},
		{tag: tagPCM, channels: 2, rate: 8000, bits: 8},
		{tag: tagPCM, channels: 1, rate: 44100, bits: 24, before: odd},
		{tag: tagPCM, channels: 3, rate: 22050, bits: 32},
		{tag: tagFloat, channels: 1, rate: 16000, bits: 32},
		{tag: tagFloat, channels: 2, rate: 48000, bits: 64},
		{tag: tagPCM, extensible: true, channels: 6, rate: 48000, bits: 24},
		{tag: tagFloat, extensible: true, channels: 2, rate: 32000, bits: 32},
		{tag: tagPCM, channels: 1, rate: 16000, bits: 16, dataSize: u32p(unknownSize)},
	} {
		s.frames = testFrames(s.channels)
		b := s.bytes()
		seeds = append(seeds, b, b[:len(b)-3], b[:len(b)/2], b[:20])
	}
	for _, enc := range []Encoding{PCM16, Float32} {
		b, _ := EncodeWAV(Clip{Rate: 16000, Samples: []float32{0, 0.5, -1, 1, 0.25}}, enc)
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzReadWAV checks that no input makes the reader panic, that every
// failure is reported as invalid input, that a success respects the limits
// and yields finite samples in [-1, 1], that the in-memory and streaming
// paths agree, and that what was read survives a write and re-read.
func FuzzReadWAV(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeWAV(data, lim)
		sc, serr := ReadWAV(hideLen{bytes.NewReader(data)}, lim)
		if (err == nil) != (serr == nil) {
			t.Fatalf("DecodeWAV err = %v, streaming ReadWAV err = %v", err, serr)
		}
		if err != nil {
			if !IsInvalidInput(err) || !IsInvalidInput(serr) {
				t.Fatalf("errors not marked as invalid input: %v / %v", err, serr)
			}
			return
		}
		if c.Rate != sc.Rate || !slices.Equal(c.Samples, sc.Samples) {
			t.Fatalf("in-memory and streaming reads differ: %d Hz x %d vs %d Hz x %d", c.Rate, len(c.Samples), sc.Rate, len(sc.Samples))
		}
		if c.Rate < lim.MinRate || c.Rate > lim.MaxRate {
			t.Fatalf("rate %d outside limits", c.Rate)
		}
		if c.Seconds() > lim.MaxSeconds {
			t.Fatalf("duration %g s over limit", c.Seconds())
		}
		if len(c.Samples) > len(data) {
			t.Fatalf("%d samples from %d bytes", len(c.Samples), len(data))
		}
		for i, v := range c.Samples {
			if math.IsNaN(float64(v)) || v < -1 || v > 1 {
				t.Fatalf("sample %d = %v", i, v)
			}
		}
		b, err := EncodeWAV(c, Float32)
		if err != nil {
			t.Fatalf("EncodeWAV: %v", err)
		}
		back, err := DecodeWAV(b, Limits{})
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if back.Rate != c.Rate || !slices.Equal(back.Samples, c.Samples) {
			t.Fatal("float32 write/read changed the audio")
		}
	})
}

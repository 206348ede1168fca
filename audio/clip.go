package audio

import (
	"math"
	"time"
)

// Clip is mono audio: Samples at Rate samples per second, nominally in
// [-1, 1].
type Clip struct {
	Rate    int
	Samples []float32
}

// Duration is the clip's length in time; zero when Rate is not positive.
func (c Clip) Duration() time.Duration {
	if c.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(len(c.Samples)) / float64(c.Rate) * float64(time.Second))
}

// Seconds is the clip's length in seconds; zero when Rate is not positive.
func (c Clip) Seconds() float64 {
	if c.Rate <= 0 {
		return 0
	}
	return float64(len(c.Samples)) / float64(c.Rate)
}

// Peak returns the largest absolute sample value (0 for no samples). NaN
// samples are ignored.
func Peak(x []float32) float32 {
	var p float32
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		if v > p {
			p = v
		}
	}
	return p
}

// Normalize scales x in place so that its peak is target, and returns the
// gain it applied. Silence (peak 0) is left as it is, with gain 1.
func Normalize(x []float32, target float32) float32 {
	p := Peak(x)
	if p == 0 || math.IsInf(float64(p), 0) {
		return 1
	}
	g := target / p
	for i := range x {
		x[i] *= g
	}
	return g
}

// RMS is the root mean square of x (0 for no samples).
func RMS(x []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return float32(math.Sqrt(s / float64(len(x))))
}

// FrameRMS returns the RMS of each frame of frameLen samples, frames starting
// every hop samples, for energy-based voice activity detection. A final
// partial frame is included (its RMS taken over the samples present), so
// every sample is covered; no samples gives no frames. frameLen and hop
// below 1 are treated as 1.
func FrameRMS(x []float32, frameLen, hop int) []float32 {
	frameLen, hop = max(frameLen, 1), max(hop, 1)
	if len(x) == 0 {
		return nil
	}
	n := 1
	if len(x) > frameLen {
		n += (len(x) - frameLen + hop - 1) / hop
	}
	out := make([]float32, n)
	for i := range out {
		start := i * hop
		out[i] = RMS(x[start:min(start+frameLen, len(x))])
	}
	return out
}

// DBFS converts an amplitude (peak or RMS, full scale 1) to decibels relative
// to full scale, with a floor of -120 dB for silence.
func DBFS(v float32) float64 {
	const floor = -120.0
	if v <= 0 {
		return floor
	}
	return max(20*math.Log10(float64(v)), floor)
}

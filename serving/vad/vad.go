package vad

import (
	"fmt"
	"math"
	"time"

	"babelfish.dev/babelfish/audio"
)

// Config tunes a Segmenter. A zero field takes its default.
type Config struct {
	// Rate is the sample rate in Hz (required).
	Rate int
	// Frame is the analysis frame length. Default 20ms.
	Frame time.Duration
	// ThresholdDBFS is the frame RMS level, in dB relative to full scale,
	// at or above which a frame is speech. Default -40.
	ThresholdDBFS float64
	// MinSilence of quiet ends a segment. Default 300ms.
	MinSilence time.Duration
	// MinSpeech is the shortest run of speech kept. Default 100ms.
	MinSpeech time.Duration
	// MaxSegment cuts a longer segment. Default 15s.
	MaxSegment time.Duration
	// Pad of audio is kept before the first and after the last loud frame.
	// Default 100ms.
	Pad time.Duration
}

func (c Config) withDefaults() Config {
	if c.Frame == 0 {
		c.Frame = 20 * time.Millisecond
	}
	if c.ThresholdDBFS == 0 {
		c.ThresholdDBFS = -40
	}
	if c.MinSilence == 0 {
		c.MinSilence = 300 * time.Millisecond
	}
	if c.MinSpeech == 0 {
		c.MinSpeech = 100 * time.Millisecond
	}
	if c.MaxSegment == 0 {
		c.MaxSegment = 15 * time.Second
	}
	if c.Pad == 0 {
		c.Pad = 100 * time.Millisecond
	}
	return c
}

// Segment is a stretch of speech: samples [Start, End) of the stream.
type Segment struct {
	Start, End int
	Samples    []float32
}

// Segmenter finds segments in pushed audio.
type Segmenter struct {
	cfg                                   Config
	frame, minSil, minSpeech, maxSeg, pad int

	buf      []float32 // samples from bufStart on
	bufStart int
	pending  []float32 // less than one frame, not yet analysed
	total    int       // samples analysed (whole frames)

	inSpeech  bool
	segStart  int // first sample of the current segment (pad included)
	firstLoud int
	lastLoud  int // end of the last loud frame
}

// New checks cfg and returns a Segmenter.
func New(cfg Config) (*Segmenter, error) {
	cfg = cfg.withDefaults()
	if cfg.Rate < 1 || cfg.Rate > 1_000_000 {
		return nil, fmt.Errorf("vad: Rate %d Hz: want 1..1000000", cfg.Rate)
	}
	if cfg.ThresholdDBFS > 0 || math.IsNaN(cfg.ThresholdDBFS) {
		return nil, fmt.Errorf("vad: ThresholdDBFS %g: want <= 0", cfg.ThresholdDBFS)
	}
	n := func(d time.Duration) int { return int(d.Seconds() * float64(cfg.Rate)) }
	s := &Segmenter{cfg: cfg, frame: max(1, n(cfg.Frame)), minSil: n(cfg.MinSilence), minSpeech: n(cfg.MinSpeech), maxSeg: n(cfg.MaxSegment), pad: n(cfg.Pad)}
	for name, v := range map[string]time.Duration{"Frame": cfg.Frame, "MinSilence": cfg.MinSilence, "MinSpeech": cfg.MinSpeech, "Pad": cfg.Pad} {
		if v < 0 {
			return nil, fmt.Errorf("vad: %s %v: want >= 0", name, v)
		}
	}
	if s.maxSeg < s.frame {
		return nil, fmt.Errorf("vad: MaxSegment %v: want at least one frame (%v)", cfg.MaxSegment, cfg.Frame)
	}
	return s, nil
}

// Rate is the sample rate the segmenter expects.
func (s *Segmenter) Rate() int { return s.cfg.Rate }

// Push adds samples and returns the segments they completed.
func (s *Segmenter) Push(x []float32) []Segment {
	var out []Segment
	s.pending = append(s.pending, x...)
	i := 0
	for ; i+s.frame <= len(s.pending); i += s.frame {
		f := s.pending[i : i+s.frame]
		s.buf = append(s.buf, f...)
		start := s.total
		s.total += s.frame
		if seg, ok := s.frameDone(start, audio.DBFS(audio.RMS(f)) >= s.cfg.ThresholdDBFS); ok {
			out = append(out, seg)
		}
	}
	s.pending = append(s.pending[:0], s.pending[i:]...)
	return out
}

// Flush ends the stream and returns the segment still open, if any.
func (s *Segmenter) Flush() []Segment {
	s.buf = append(s.buf, s.pending...)
	s.total += len(s.pending)
	s.pending = s.pending[:0]
	if !s.inSpeech {
		return nil
	}
	s.inSpeech = false
	if s.lastLoud-s.firstLoud < s.minSpeech {
		return nil
	}
	return []Segment{s.cut(min(s.lastLoud+s.pad, s.total))}
}

// frameDone updates the state after the frame starting at start.
func (s *Segmenter) frameDone(start int, loud bool) (Segment, bool) {
	end := start + s.frame
	if !s.inSpeech {
		if loud {
			s.inSpeech = true
			s.segStart = max(start-s.pad, s.bufStart)
			s.firstLoud, s.lastLoud = start, end
			return Segment{}, false
		}
		// Keep only the pad that may precede the next segment.
		if drop := len(s.buf) - s.pad; drop > 0 {
			s.buf = append(s.buf[:0], s.buf[drop:]...)
			s.bufStart += drop
		}
		return Segment{}, false
	}
	if loud {
		s.lastLoud = end
	}
	switch {
	case end-s.lastLoud >= s.minSil:
		s.inSpeech = false
		if s.lastLoud-s.firstLoud < s.minSpeech {
			s.drop(end)
			return Segment{}, false
		}
		return s.cut(min(s.lastLoud+s.pad, end)), true
	case end-s.segStart >= s.maxSeg:
		seg := s.cut(end)
		// The rest goes on as a new segment; if no loud frame follows,
		// lastLoud < firstLoud and it is dropped as silence.
		s.segStart, s.firstLoud = end, end
		return seg, true
	}
	return Segment{}, false
}

// cut returns [segStart, end) and forgets the samples before end.
func (s *Segmenter) cut(end int) Segment {
	seg := Segment{Start: s.segStart, End: end, Samples: append([]float32(nil), s.buf[s.segStart-s.bufStart:end-s.bufStart]...)}
	s.drop(end)
	return seg
}

func (s *Segmenter) drop(upTo int) {
	n := upTo - s.bufStart
	s.buf = append(s.buf[:0], s.buf[n:]...)
	s.bufStart = upTo
}

package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// wavSpec describes a WAV file for the tests to assemble byte by byte, so
// the reader is checked against the format, not against this package's
// writer.
type wavSpec struct {
	tag        uint16 // format tag, or the sub-format tag when extensible
	extensible bool
	channels   int
	rate       int
	bits       int
	// frames[i][c] is channel c of frame i, in [-1, 1].
	frames [][]float64
	// before are extra chunks (id + body) written between fmt and data.
	before [][2]string
	// dataSize, when set, replaces the true data chunk size.
	dataSize *uint32
	// trailer is appended after the data chunk.
	trailer []byte
}

func (s wavSpec) encodeSample(b []byte, v float64) []byte {
	le := binary.LittleEndian
	switch {
	case s.tag == tagFloat && s.bits == 32:
		return le.AppendUint32(b, math.Float32bits(float32(v)))
	case s.tag == tagFloat:
		return le.AppendUint64(b, math.Float64bits(v))
	}
	switch (s.bits + 7) / 8 {
	case 1:
		return append(b, byte(int(math.Round(v*128))+128))
	case 2:
		// Fewer valid bits are left-justified.
		q := int64(math.Round(v * float64(int64(1)<<(s.bits-1))))
		return le.AppendUint16(b, uint16(int16(q<<(16-s.bits))))
	case 3:
		q := int32(math.Round(v * (1 << 23)))
		return append(b, byte(q), byte(q>>8), byte(q>>16))
	default:
		q := int64(math.Round(v * (1 << 31)))
		q = min(q, math.MaxInt32)
		return le.AppendUint32(b, uint32(int32(q)))
	}
}

func (s wavSpec) bytes() []byte {
	le := binary.LittleEndian
	var data []byte
	for _, fr := range s.frames {
		for _, v := range fr {
			data = s.encodeSample(data, v)
		}
	}
	bps := (s.bits + 7) / 8
	var fmtBody []byte
	tag := s.tag
	if s.extensible {
		tag = tagExtensible
	}
	fmtBody = le.AppendUint16(fmtBody, tag)
	fmtBody = le.AppendUint16(fmtBody, uint16(s.channels))
	fmtBody = le.AppendUint32(fmtBody, uint32(s.rate))
	fmtBody = le.AppendUint32(fmtBody, uint32(s.rate*s.channels*bps))
	fmtBody = le.AppendUint16(fmtBody, uint16(s.channels*bps))
	fmtBody = le.AppendUint16(fmtBody, uint16(bps*8))
	if s.extensible {
		fmtBody = le.AppendUint16(fmtBody, 22)
		fmtBody = le.AppendUint16(fmtBody, uint16(s.bits))
		fmtBody = le.AppendUint32(fmtBody, 0) // channel mask
		fmtBody = le.AppendUint16(fmtBody, s.tag)
		fmtBody = append(fmtBody, ksTail[:]...)
	}
	var out []byte
	out = append(out, "RIFF\x00\x00\x00\x00WAVE"...)
	out = appendChunk(out, "fmt ", fmtBody)
	for _, c := range s.before {
		out = appendChunk(out, c[0], []byte(c[1]))
	}
	size := uint32(len(data))
	if s.dataSize != nil {
		size = *s.dataSize
	}
	out = append(out, "data"...)
	out = le.AppendUint32(out, size)
	out = append(out, data...)
	out = append(out, s.trailer...)
	le.PutUint32(out[4:], uint32(len(out)-8))
	return out
}

func appendChunk(b []byte, id string, body []byte) []byte {
	b = append(b, id...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0) // pad byte
	}
	return b
}

func u32p(v uint32) *uint32 { return &v }

// hideLen hides Len() so ReadWAV takes its streaming path.
type hideLen struct{ r io.Reader }

func (h hideLen) Read(p []byte) (int, error) { return h.r.Read(p) }

// testFrames is a short multi-channel signal whose values are exact in
// 8-bit PCM, so every encoding decodes to known values. Channel 0 is 1/8
// above the mean and channel 1 1/8 below, so downmixing is checked too.
func testFrames(channels int) [][]float64 {
	vals := []float64{0, 0.5, -0.5, 0.25, -0.875, 0.75, -0.125, 0.0625}
	out := make([][]float64, len(vals))
	for i, v := range vals {
		out[i] = make([]float64, channels)
		for c := range out[i] {
			out[i][c] = v
		}
		if channels > 1 {
			out[i][0] += 0.125
			out[i][1] -= 0.125
		}
	}
	return out
}

func TestReadWAVFormats(t *testing.T) {
	odd := [][2]string{{"LIST", "odd"}, {"junk", "x"}}
	tests := []struct {
		name string
		spec wavSpec
		tol  float64
	}{
		{"pcm8 mono", wavSpec{tag: tagPCM, channels: 1, rate: 8000, bits: 8}, 0},
		{"pcm16 mono", wavSpec{tag: tagPCM, channels: 1, rate: 16000, bits: 16}, 0},
		{"pcm16 stereo", wavSpec{tag: tagPCM, channels: 2, rate: 44100, bits: 16}, 0},
		{"pcm12 in 16-bit container", wavSpec{tag: tagPCM, channels: 1, rate: 16000, bits: 12}, 0},
		{"pcm24 stereo", wavSpec{tag: tagPCM, channels: 2, rate: 48000, bits: 24}, 0},
		{"pcm32 mono", wavSpec{tag: tagPCM, channels: 1, rate: 22050, bits: 32}, 1e-9},
		{"float32 mono", wavSpec{tag: tagFloat, channels: 1, rate: 16000, bits: 32}, 0},
		{"float64 3ch", wavSpec{tag: tagFloat, channels: 3, rate: 16000, bits: 64}, 1e-7},
		{"extensible pcm24 6ch", wavSpec{tag: tagPCM, extensible: true, channels: 6, rate: 48000, bits: 24}, 1e-7},
		{"extensible float32 stereo", wavSpec{tag: tagFloat, extensible: true, channels: 2, rate: 32000, bits: 32}, 0},
		{"odd-sized chunks with padding", wavSpec{tag: tagPCM, channels: 1, rate: 16000, bits: 16, before: odd}, 0},
		{"streamed data size 0xFFFFFFFF", wavSpec{tag: tagPCM, channels: 2, rate: 16000, bits: 16, dataSize: u32p(unknownSize)}, 0},
		{"espeak-ng's streamed data size 0x7FFFF000", wavSpec{tag: tagPCM, channels: 1, rate: 22050, bits: 16, dataSize: u32p(streamedSize)}, 0},
		{"trailing chunk after data", wavSpec{tag: tagPCM, channels: 1, rate: 16000, bits: 16, trailer: []byte("LIST\x04\x00\x00\x00abcd")}, 0},
	}
	for _, tc := range tests {
		tc.spec.frames = testFrames(tc.spec.channels)
		file := tc.spec.bytes()
		want := make([]float64, len(tc.spec.frames))
		for i, fr := range tc.spec.frames {
			for _, v := range fr {
				want[i] += v / float64(len(fr))
			}
		}
		readers := map[string]func() (Clip, error){
			"DecodeWAV":            func() (Clip, error) { return DecodeWAV(file, DefaultLimits()) },
			"ReadWAV streaming":    func() (Clip, error) { return ReadWAV(hideLen{bytes.NewReader(file)}, DefaultLimits()) },
			"ReadWAV byte-by-byte": func() (Clip, error) { return ReadWAV(iotest.OneByteReader(bytes.NewReader(file)), DefaultLimits()) },
		}
		for rname, read := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				c, err := read()
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if c.Rate != tc.spec.rate {
					t.Errorf("rate %d, want %d", c.Rate, tc.spec.rate)
				}
				if len(c.Samples) != len(want) {
					t.Fatalf("%d samples, want %d", len(c.Samples), len(want))
				}
				for i, v := range c.Samples {
					if d := math.Abs(float64(v) - want[i]); d > tc.tol {
						t.Errorf("sample %d = %v, want %v (off by %g)", i, v, want[i], d)
					}
				}
			})
		}
	}
}

func TestReadWAVClampsFloat(t *testing.T) {
	s := wavSpec{tag: tagFloat, channels: 1, rate: 16000, bits: 32, frames: [][]float64{{1.5}, {-3}, {0.5}}}
	c, err := DecodeWAV(s.bytes(), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1, -1, 0.5}
	for i, v := range c.Samples {
		if v != want[i] {
			t.Errorf("sample %d = %v, want %v", i, v, want[i])
		}
	}
}

func TestReadWAVBadInput(t *testing.T) {
	good := wavSpec{tag: tagPCM, channels: 1, rate: 16000, bits: 16, frames: testFrames(1)}.bytes()
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	le := binary.LittleEndian
	// Offsets in good: RIFF header 0..11, fmt chunk header 12..19, fmt body
	// 20..35 (channels at 22, rate at 24, bits at 34), data header 36..43.
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrMalformed, "empty input"},
		{"short header", []byte("RIFF\x00"), ErrMalformed, "truncated"},
		{"not RIFF", []byte("OggS\x00\x00\x00\x00WAVEfmt "), ErrMalformed, "no RIFF magic"},
		{"RF64", mod(func(b []byte) []byte { copy(b, "RF64"); return b }), ErrUnsupported, "RF64"},
		{"not WAVE", mod(func(b []byte) []byte { copy(b[8:], "AVI "); return b }), ErrMalformed, "form type"},
		{"header only", good[:12], ErrMalformed, "no fmt chunk"},
		{"fmt without data", good[:36], ErrMalformed, "no data chunk"},
		{"data before fmt", append([]byte("RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00"), good[12:]...), ErrMalformed, "data chunk before fmt"},
		{"zero channels", mod(func(b []byte) []byte { le.PutUint16(b[22:], 0); return b }), ErrMalformed, "0 channels (NumChannels)"},
		{"zero rate", mod(func(b []byte) []byte { le.PutUint32(b[24:], 0); return b }), ErrMalformed, "sample rate 0 Hz (SampleRate)"},
		{"zero bits", mod(func(b []byte) []byte { le.PutUint16(b[34:], 0); return b }), ErrUnsupported, "BitsPerSample"},
		{"40 bits", mod(func(b []byte) []byte { le.PutUint16(b[34:], 40); return b }), ErrUnsupported, "BitsPerSample"},
		{"float16", wavSpec{tag: tagFloat, channels: 1, rate: 16000, bits: 16}.bytes(), ErrUnsupported, "IEEE float with 16 bits"},
		{"mu-law", mod(func(b []byte) []byte { le.PutUint16(b[20:], 7); return b }), ErrUnsupported, "mu-law"},
		{"fmt too small", mod(func(b []byte) []byte { le.PutUint32(b[16:], 8); return b }), ErrMalformed, "fmt chunk size 8"},
		{"fmt absurd size", mod(func(b []byte) []byte { le.PutUint32(b[16:], 0xFFFFFFF0); return b }), ErrMalformed, "fmt chunk size"},
		{"second fmt", append(append(append([]byte(nil), good[:36]...), good[12:36]...), good[36:]...), ErrMalformed, "second fmt"},
		{"truncated data", good[:len(good)-3], ErrMalformed, "truncated"},
		{"data size beyond input", mod(func(b []byte) []byte { le.PutUint32(b[40:], 0x7FFFFFF0); return b }), ErrMalformed, "truncated"},
		{"unknown chunk beyond input", append(append([]byte(nil), good[:36]...), "LIST\xf0\xff\xff\x7f"...), ErrMalformed, ""},
		{"truncated fmt", good[:30], ErrMalformed, "truncated in fmt chunk"},
		{"extensible too short", mod(func(b []byte) []byte { le.PutUint16(b[20:], tagExtensible); return b }), ErrMalformed, "WAVE_FORMAT_EXTENSIBLE fmt chunk is 16 bytes"},
		{"extensible unknown GUID", func() []byte {
			b := wavSpec{tag: tagPCM, extensible: true, channels: 1, rate: 16000, bits: 16, frames: testFrames(1)}.bytes()
			b[20+24+5] ^= 0xFF
			return b
		}(), ErrUnsupported, "sub-format GUID"},
		{"NaN float", wavSpec{tag: tagFloat, channels: 2, rate: 16000, bits: 32, frames: [][]float64{{0, 0}, {math.NaN(), 0}}}.bytes(), ErrMalformed, "non-finite float sample in frame 1"},
		{"Inf float64", wavSpec{tag: tagFloat, channels: 1, rate: 16000, bits: 64, frames: [][]float64{{math.Inf(-1)}}}.bytes(), ErrMalformed, "non-finite"},
	}
	for _, tc := range tests {
		for _, mode := range []string{"bytes", "stream"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				var err error
				if mode == "bytes" {
					_, err = DecodeWAV(tc.in, Limits{})
				} else {
					_, err = ReadWAV(hideLen{bytes.NewReader(tc.in)}, Limits{})
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if !IsInvalidInput(err) {
					t.Errorf("IsInvalidInput(%v) = false", err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("err = %q, want it to mention %q", err, tc.msg)
				}
			})
		}
	}
}

// A header that declares gigabytes must not make the reader allocate them.
func TestReadWAVAbsurdSizesAllocateLittle(t *testing.T) {
	le := binary.LittleEndian
	hdr := wavSpec{tag: tagPCM, channels: 65535, rate: 1, bits: 32}.bytes()
	le.PutUint32(hdr[len(hdr)-4:], 0xFFFFFFF0)
	in := append(hdr, make([]byte, 1000)...)
	for _, mode := range []string{"bytes", "stream"} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var err error
		if mode == "bytes" {
			_, err = DecodeWAV(in, Limits{})
		} else {
			_, err = ReadWAV(hideLen{bytes.NewReader(in)}, Limits{})
		}
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", mode, err)
		}
		// One frame of 65535 x 4 bytes is the largest buffer it may need.
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s: allocated %d bytes for a %d-byte input", mode, got, len(in))
		}
	}
}

func TestReadWAVLimits(t *testing.T) {
	// 612 s at 8 kHz, declared in the header; the stream carries only the
	// header, so the limit must be checked before any data is read.
	long := wavSpec{tag: tagPCM, channels: 1, rate: 8000, bits: 16, dataSize: u32p(612 * 8000 * 2)}.bytes()
	stereo6 := wavSpec{tag: tagPCM, channels: 6, rate: 16000, bits: 16, frames: testFrames(6)}.bytes()
	hiRate := wavSpec{tag: tagPCM, channels: 1, rate: 384000, bits: 16, frames: testFrames(1)}.bytes()
	loRate := wavSpec{tag: tagPCM, channels: 1, rate: 4000, bits: 16, frames: testFrames(1)}.bytes()
	// A streamed file (size 0xFFFFFFFF) longer than the limit: only
	// counting samples as they arrive can catch it.
	streamed := wavSpec{tag: tagPCM, channels: 1, rate: 8000, bits: 16, frames: make([][]float64, 3*8000), dataSize: u32p(unknownSize)}
	for i := range streamed.frames {
		streamed.frames[i] = []float64{0}
	}
	streamedBytes := streamed.bytes()
	tests := []struct {
		name   string
		in     []byte
		stream bool
		lim    Limits
		field  string
		msg    string
	}{
		{"duration declared", long, true, Limits{MaxSeconds: 60}, "MaxSeconds", "audio: duration 612.0 s exceeds limit 60 s (MaxSeconds)"},
		{"duration streamed", streamedBytes, true, Limits{MaxSeconds: 2}, "MaxSeconds", "exceeds limit 2 s (MaxSeconds)"},
		{"bytes in memory", stereo6, false, Limits{MaxBytes: 50}, "MaxBytes", "audio: input size 140 bytes exceeds limit 50 bytes (MaxBytes)"},
		{"bytes declared", long, true, Limits{MaxBytes: 1 << 20}, "MaxBytes", "exceeds limit 1048576 bytes (MaxBytes)"},
		{"bytes streamed", streamedBytes, true, Limits{MaxBytes: 1000}, "MaxBytes", "exceeds limit 1000 bytes (MaxBytes)"},
		{"channels", stereo6, false, Limits{MaxChannels: 2}, "MaxChannels", "audio: 6 channels exceeds limit 2 (MaxChannels)"},
		{"rate too high", hiRate, true, Limits{MaxRate: 192000}, "MaxRate", "audio: sample rate 384000 Hz exceeds limit 192000 Hz (MaxRate)"},
		{"rate too low", loRate, false, Limits{MinRate: 8000}, "MinRate", "audio: sample rate 4000 Hz is below limit 8000 Hz (MinRate)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.stream {
				_, err = ReadWAV(hideLen{bytes.NewReader(tc.in)}, tc.lim)
			} else {
				_, err = DecodeWAV(tc.in, tc.lim)
			}
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LimitError", err)
			}
			if !errors.Is(err, ErrLimit) || !IsInvalidInput(err) {
				t.Errorf("err %v does not match ErrLimit", err)
			}
			if le.Field != tc.field {
				t.Errorf("field %q, want %q", le.Field, tc.field)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want %q", err, tc.msg)
			}
		})
	}
	// Within limits the same inputs pass.
	if _, err := DecodeWAV(stereo6, DefaultLimits()); err != nil {
		t.Errorf("6 channels under DefaultLimits: %v", err)
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, lim := range []Limits{{MaxBytes: -1}, {MaxSeconds: -1}, {MaxSeconds: math.NaN()}, {MinRate: -1}, {MaxRate: -5}, {MinRate: 9, MaxRate: 8}, {MaxChannels: -1}} {
		if _, err := DecodeWAV(nil, lim); err == nil || IsInvalidInput(err) {
			t.Errorf("Limits %+v: err = %v, want a configuration error", lim, err)
		}
	}
}

type failingReader struct{ n int }

var errDisk = errors.New("disk on fire")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errDisk
	}
	n := min(len(p), f.n)
	for i := range p[:n] {
		p[i] = "RIFF\x00\x00\x00\x00WAVE"[i%12]
	}
	f.n -= n
	return n, nil
}

func TestReadWAVReaderError(t *testing.T) {
	_, err := ReadWAV(&failingReader{n: 5}, Limits{})
	if !errors.Is(err, errDisk) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
	if IsInvalidInput(err) {
		t.Errorf("a failing reader is not invalid input: %v", err)
	}
}

func TestWriteWAV(t *testing.T) {
	in := []float32{0, 0.5, -0.5, 1, -1, 1.5, -1.5, 0.25 / 32768, 0.5 / 32768, -0.5 / 32768, float32(math.NaN()), float32(math.Inf(1)), 1e-3}
	tests := []struct {
		enc  Encoding
		want []float32
	}{
		// PCM16: x32768, rounded half away from zero, clipped to int16.
		{PCM16, []float32{0, 0.5, -0.5, 32767.0 / 32768, -1, 32767.0 / 32768, -1, 0, 1.0 / 32768, -1.0 / 32768, 0, 32767.0 / 32768, 33.0 / 32768}},
		// Float32 keeps values; non-finite ones are made finite, then
		// the reader clamps to [-1, 1].
		{Float32, []float32{0, 0.5, -0.5, 1, -1, 1, -1, 0.25 / 32768, 0.5 / 32768, -0.5 / 32768, 0, 1, 1e-3}},
	}
	for _, tc := range tests {
		t.Run(tc.enc.String(), func(t *testing.T) {
			c := Clip{Rate: 24000, Samples: in}
			b, err := EncodeWAV(c, tc.enc)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteWAV(&buf, c, tc.enc); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), b) {
				t.Errorf("WriteWAV and EncodeWAV differ")
			}
			got, err := DecodeWAV(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Rate != 24000 || len(got.Samples) != len(tc.want) {
				t.Fatalf("got rate %d, %d samples", got.Rate, len(got.Samples))
			}
			for i, v := range got.Samples {
				if v != tc.want[i] {
					t.Errorf("sample %d: wrote %v, read %v, want %v", i, in[i], v, tc.want[i])
				}
			}
		})
	}
}

// PCM16 -> float -> PCM16 is lossless, so re-encoding never degrades audio.
func TestPCM16RoundTripExact(t *testing.T) {
	all := make([]float32, 65536)
	for i := range all {
		all[i] = float32(int16(i)) / 32768
	}
	b, err := EncodeWAV(Clip{Rate: 16000, Samples: all}, PCM16)
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeWAV(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := EncodeWAV(c, PCM16)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatal("PCM16 round trip changed the bytes")
	}
}

func TestWriteWAVErrors(t *testing.T) {
	tests := []struct {
		name string
		c    Clip
		enc  Encoding
		msg  string
	}{
		{"zero rate", Clip{Rate: 0}, PCM16, "Clip.Rate is 0 Hz"},
		{"negative rate", Clip{Rate: -8000}, Float32, "Clip.Rate is -8000 Hz"},
		{"bad encoding", Clip{Rate: 8000}, Encoding(9), "Encoding(9)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncodeWAV(tc.c, tc.enc)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want it to mention %q", err, tc.msg)
			}
			if err := WriteWAV(io.Discard, tc.c, tc.enc); err == nil {
				t.Error("WriteWAV: no error")
			}
		})
	}
}

// The mono PCM16 fast path gives every sample exactly what the general
// path does (channel average in float64, clamped, rounded to float32).
func TestDecodeFramesPCM16FastPathExact(t *testing.T) {
	b := make([]byte, 0, 2<<16)
	for v := range 1 << 16 {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	got, err := decodeFrames(nil, b, wavFormat{channels: 1, bytes: 2, rate: 16000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1<<16 {
		t.Fatalf("%d samples, want %d", len(got), 1<<16)
	}
	for v := range 1 << 16 {
		want := float32(max(-1, min(1, float64(int16(uint16(v)))/(1<<15))))
		if got[v] != want {
			t.Fatalf("sample %#04x = %v, want %v", v, got[v], want)
		}
	}
	// A trailing odd byte is not a whole frame.
	if got, _ := decodeFrames(nil, []byte{1, 0, 7}, wavFormat{channels: 1, bytes: 2}); len(got) != 1 {
		t.Fatalf("3 bytes gave %d samples, want 1", len(got))
	}
}

// TestToPCM16MatchesRound checks the fast rounding against math.Round (half
// away from zero) and the clip, on every half step of the PCM16 grid in and
// a little past [-1, 1], a spread of float32 bit patterns and the specials.
func TestToPCM16MatchesRound(t *testing.T) {
	ref := func(v float32) int16 {
		if v != v {
			return 0
		}
		return int16(max(math.MinInt16, min(math.MaxInt16, math.Round(float64(v)*(1<<15)))))
	}
	var vals []float32
	for k := -70000; k <= 70000; k++ {
		h := float32(k) / (1 << 16) // k/2 on the PCM16 scale: every tie
		vals = append(vals, h, math.Nextafter32(h, 2), math.Nextafter32(h, -2))
	}
	for bits := uint64(0); bits < 1<<32; bits += 7919 {
		vals = append(vals, math.Float32frombits(uint32(bits)))
	}
	vals = append(vals, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.MaxFloat32, -math.MaxFloat32, 0, float32(math.Copysign(0, -1)))
	for _, v := range vals {
		if got, want := ToPCM16(v), ref(v); got != want {
			t.Fatalf("ToPCM16(%v) = %d, want %d", v, got, want)
		}
	}
}

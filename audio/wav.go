package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// Limits bound what the WAV reader accepts. A zero field sets no limit on
// its axis. Whatever the limits, memory use is bounded by the bytes actually
// read, not by sizes a header declares.
type Limits struct {
	// MaxBytes bounds the bytes read from the input (headers included).
	MaxBytes int64
	// MaxSeconds bounds the clip's duration.
	MaxSeconds float64
	// MinRate and MaxRate bound the sample rate in Hz.
	MinRate, MaxRate int
	// MaxChannels bounds the channel count before downmixing.
	MaxChannels int
}

// DefaultLimits are limits fit for a translation request: two minutes of
// audio at 8 to 192 kHz, up to 8 channels, at most 64 MiB.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 64 << 20, MaxSeconds: 120, MinRate: 8000, MaxRate: 192000, MaxChannels: 8}
}

func (l Limits) validate() error {
	switch {
	case l.MaxBytes < 0:
		return fmt.Errorf("audio: Limits.MaxBytes is %d: want >= 0 (0 = no limit)", l.MaxBytes)
	case l.MaxSeconds < 0 || math.IsNaN(l.MaxSeconds):
		return fmt.Errorf("audio: Limits.MaxSeconds is %g: want >= 0 (0 = no limit)", l.MaxSeconds)
	case l.MinRate < 0:
		return fmt.Errorf("audio: Limits.MinRate is %d: want >= 0 (0 = no limit)", l.MinRate)
	case l.MaxRate < 0:
		return fmt.Errorf("audio: Limits.MaxRate is %d: want >= 0 (0 = no limit)", l.MaxRate)
	case l.MaxRate > 0 && l.MinRate > l.MaxRate:
		return fmt.Errorf("audio: Limits.MinRate %d exceeds Limits.MaxRate %d", l.MinRate, l.MaxRate)
	case l.MaxChannels < 0:
		return fmt.Errorf("audio: Limits.MaxChannels is %d: want >= 0 (0 = no limit)", l.MaxChannels)
	}
	return nil
}

const (
	tagPCM        = 0x0001
	tagFloat      = 0x0003
	tagExtensible = 0xFFFE
	// maxFmtSize bounds the fmt chunk we are willing to buffer; real ones
	// are 16, 18 or 40 bytes.
	maxFmtSize = 1 << 10
	// unknownSize is what streaming writers put in the data chunk size
	// when they cannot seek back: read to the end of the input. espeak-ng
	// --stdout writes streamedSize (0x7FFFF000) instead, meaning the same.
	streamedSize = 0x7FFFF000
	unknownSize  = 0xFFFFFFFF
	// readBlock is how many bytes of sample data are read at a time.
	readBlock = 64 << 10
)

// ksTail is bytes 2..15 of the KSDATAFORMAT_SUBTYPE GUIDs that carry a
// plain format tag in their first two bytes (PCM, IEEE float).
var ksTail = [14]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// wavFormat is the part of a fmt chunk the decoder needs.
type wavFormat struct {
	float    bool
	channels int
	rate     int
	bytes    int // container bytes per sample
}

func (f wavFormat) frameSize() int { return f.channels * f.bytes }

// ReadWAV decodes a RIFF/WAVE stream into a mono clip, averaging channels.
// It reads no further than the end of the data chunk. Chunks other than
// "fmt " and "data" are skipped. A data chunk size of 0xFFFFFFFF (written by
// streaming encoders) means "to the end of the input"; a trailing partial
// frame is dropped. Float samples outside [-1, 1] are clamped; NaN or
// infinite ones are an error.
//
// Errors caused by the input match ErrMalformed, ErrUnsupported or ErrLimit;
// errors of r itself are returned wrapped.
func ReadWAV(r io.Reader, lim Limits) (Clip, error) {
	if err := lim.validate(); err != nil {
		return Clip{}, err
	}
	d := &wavDecoder{in: &countingReader{r: r, max: lim.MaxBytes}, lim: lim, avail: -1}
	// bytes.Reader, bytes.Buffer and strings.Reader know how much is left:
	// use it to reject declared sizes larger than the input up front.
	if l, ok := r.(interface{ Len() int }); ok {
		d.avail = int64(l.Len())
	}
	return d.decode()
}

// DecodeWAV is ReadWAV over an in-memory file.
func DecodeWAV(b []byte, lim Limits) (Clip, error) {
	if err := lim.validate(); err != nil {
		return Clip{}, err
	}
	if lim.MaxBytes > 0 && int64(len(b)) > lim.MaxBytes {
		return Clip{}, &LimitError{Field: "MaxBytes", Value: float64(len(b)), Limit: float64(lim.MaxBytes)}
	}
	d := &wavDecoder{in: &countingReader{r: bytes.NewReader(b), max: lim.MaxBytes}, lim: lim, avail: int64(len(b)), mem: b}
	return d.decode()
}

// countingReader counts bytes read and stops with a *LimitError one byte
// past max (when max > 0).
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.max > 0 {
		if c.n > c.max {
			return 0, &LimitError{Field: "MaxBytes", Value: float64(c.n), Limit: float64(c.max)}
		}
		if room := c.max + 1 - c.n; int64(len(p)) > room {
			p = p[:room]
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.max > 0 && c.n > c.max {
		return n, &LimitError{Field: "MaxBytes", Value: float64(c.n), Limit: float64(c.max)}
	}
	return n, err
}

type wavDecoder struct {
	in    *countingReader
	lim   Limits
	avail int64 // bytes the input had at the start, -1 if unknown
	// mem is the whole input when it is in memory (DecodeWAV): the data
	// chunk is then decoded where it lies, without a read buffer.
	mem []byte
}

// readErr turns a read failure into the error to return: end of input is
// truncation (malformed), limit errors pass as they are, anything else is
// the reader's own failure.
func (d *wavDecoder) readErr(err error, where string) error {
	var le *LimitError
	switch {
	case errors.As(err, &le):
		return le
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("truncated in %s at byte %d", where, d.in.n)
	}
	return fmt.Errorf("audio: read WAV %s: %w", where, err)
}

func (d *wavDecoder) decode() (Clip, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(d.in, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Clip{}, malformed("empty input")
		}
		return Clip{}, d.readErr(err, "RIFF header")
	}
	switch string(hdr[0:4]) {
	case "RIFF":
	case "RF64":
		return Clip{}, unsupported("RF64 (64-bit RIFF) files")
	case "RIFX":
		return Clip{}, unsupported("big-endian RIFX files")
	default:
		return Clip{}, malformed("no RIFF magic (first bytes %q)", hdr[0:4])
	}
	// The RIFF size field is not checked: streaming writers leave it wrong,
	// and the data chunk's own size is what bounds the read.
	if string(hdr[8:12]) != "WAVE" {
		return Clip{}, malformed("RIFF form type is %q, want \"WAVE\"", hdr[8:12])
	}

	var f *wavFormat
	for {
		var ch [8]byte
		if _, err := io.ReadFull(d.in, ch[:]); err != nil {
			if errors.Is(err, io.EOF) {
				if f == nil {
					return Clip{}, malformed("no fmt chunk")
				}
				return Clip{}, malformed("no data chunk")
			}
			return Clip{}, d.readErr(err, "chunk header")
		}
		id, size := string(ch[0:4]), binary.LittleEndian.Uint32(ch[4:8])
		switch id {
		case "fmt ":
			if f != nil {
				return Clip{}, malformed("second fmt chunk at byte %d", d.in.n-8)
			}
			if size < 16 || size > maxFmtSize {
				return Clip{}, malformed("fmt chunk size %d bytes, want 16..%d", size, maxFmtSize)
			}
			buf := make([]byte, size+size&1)
			if _, err := io.ReadFull(d.in, buf); err != nil {
				// A missing pad byte after the last header chunk is
				// tolerated only if the chunk itself is complete; the
				// data chunk must still follow, so this is truncation.
				return Clip{}, d.readErr(err, "fmt chunk")
			}
			pf, err := parseFmt(buf[:size])
			if err != nil {
				return Clip{}, err
			}
			if err := d.checkFormat(pf); err != nil {
				return Clip{}, err
			}
			f = &pf
		case "data":
			if f == nil {
				return Clip{}, malformed("data chunk before fmt chunk")
			}
			return d.readData(*f, size)
		default:
			// Odd-sized chunks are followed by a pad byte.
			skip := int64(size) + int64(size&1)
			if d.avail >= 0 && skip > d.avail-d.in.n {
				return Clip{}, malformed("chunk %q declares %d bytes but only %d remain", id, size, d.avail-d.in.n)
			}
			if _, err := io.CopyN(io.Discard, d.in, skip); err != nil {
				return Clip{}, d.readErr(err, fmt.Sprintf("chunk %q", id))
			}
		}
	}
}

// parseFmt reads a fmt chunk body (at least 16 bytes).
func parseFmt(b []byte) (wavFormat, error) {
	le := binary.LittleEndian
	tag := le.Uint16(b[0:])
	channels := int(le.Uint16(b[2:]))
	rate := le.Uint32(b[4:])
	bits := int(le.Uint16(b[14:]))
	if tag == tagExtensible {
		if len(b) < 40 {
			return wavFormat{}, malformed("WAVE_FORMAT_EXTENSIBLE fmt chunk is %d bytes, want >= 40", len(b))
		}
		if cb := le.Uint16(b[16:]); cb < 22 {
			return wavFormat{}, malformed("WAVE_FORMAT_EXTENSIBLE cbSize is %d, want >= 22", cb)
		}
		guid := b[24:40]
		if !bytes.Equal(guid[2:], ksTail[:]) {
			return wavFormat{}, unsupported("WAVE_FORMAT_EXTENSIBLE sub-format GUID %x", guid)
		}
		tag = le.Uint16(guid[0:])
	}
	if channels == 0 {
		return wavFormat{}, malformed("fmt chunk declares 0 channels (NumChannels)")
	}
	if rate == 0 || rate > math.MaxInt32 {
		return wavFormat{}, malformed("fmt chunk declares sample rate %d Hz (SampleRate)", rate)
	}
	f := wavFormat{channels: channels, rate: int(rate)}
	switch tag {
	case tagPCM:
		if bits == 0 || bits > 32 {
			return wavFormat{}, unsupported("PCM with %d bits per sample (BitsPerSample), want 1..32", bits)
		}
		// Fewer valid bits (e.g. 12 or 20) sit left-justified in a whole
		// number of bytes; decode the container.
		f.bytes = (bits + 7) / 8
	case tagFloat:
		if bits != 32 && bits != 64 {
			return wavFormat{}, unsupported("IEEE float with %d bits per sample (BitsPerSample), want 32 or 64", bits)
		}
		f.float, f.bytes = true, bits/8
	default:
		return wavFormat{}, unsupported("format tag 0x%04x (%s), want PCM (1) or IEEE float (3)", tag, tagName(tag))
	}
	return f, nil
}

func tagName(tag uint16) string {
	switch tag {
	case 0x0002:
		return "MS ADPCM"
	case 0x0006:
		return "A-law"
	case 0x0007:
		return "mu-law"
	case 0x0011:
		return "IMA ADPCM"
	case 0x0055:
		return "MP3"
	}
	return "unknown"
}

func (d *wavDecoder) checkFormat(f wavFormat) error {
	l := d.lim
	switch {
	case l.MaxChannels > 0 && f.channels > l.MaxChannels:
		return &LimitError{Field: "MaxChannels", Value: float64(f.channels), Limit: float64(l.MaxChannels)}
	case l.MinRate > 0 && f.rate < l.MinRate:
		return &LimitError{Field: "MinRate", Value: float64(f.rate), Limit: float64(l.MinRate)}
	case l.MaxRate > 0 && f.rate > l.MaxRate:
		return &LimitError{Field: "MaxRate", Value: float64(f.rate), Limit: float64(l.MaxRate)}
	}
	return nil
}

func (d *wavDecoder) tooLong(frames int64, rate int) error {
	if d.lim.MaxSeconds > 0 {
		if secs := float64(frames) / float64(rate); secs > d.lim.MaxSeconds {
			return &LimitError{Field: "MaxSeconds", Value: secs, Limit: d.lim.MaxSeconds}
		}
	}
	return nil
}

func (d *wavDecoder) readData(f wavFormat, declared uint32) (Clip, error) {
	frameSize := int64(f.frameSize())
	size, known := int64(declared), declared != unknownSize && declared != streamedSize
	if d.avail >= 0 {
		left := d.avail - d.in.n
		if !known {
			size, known = left, true
		} else if size > left {
			return Clip{}, malformed("data chunk declares %d bytes but only %d remain (truncated)", size, left)
		}
	}
	capFrames := int64(readBlock) / frameSize
	if known {
		if d.lim.MaxBytes > 0 && d.in.n+size > d.lim.MaxBytes {
			return Clip{}, &LimitError{Field: "MaxBytes", Value: float64(d.in.n + size), Limit: float64(d.lim.MaxBytes)}
		}
		if err := d.tooLong(size/frameSize, f.rate); err != nil {
			return Clip{}, err
		}
		// Trust the declared size for the allocation only when the input
		// is known to hold it; otherwise grow as bytes arrive.
		capFrames = size / frameSize
		if d.avail < 0 {
			capFrames = min(capFrames, 1<<16)
		}
	}

	if d.mem != nil && known {
		// Checked above: size fits in what is left of the input.
		data := d.mem[d.in.n : d.in.n+size]
		whole := size - size%frameSize
		samples, err := decodeFrames(make([]float32, 0, whole/frameSize), data[:whole], f)
		if err != nil {
			return Clip{}, err
		}
		d.in.n += size
		return Clip{Rate: f.rate, Samples: samples}, nil
	}

	blockFrames := max(1, int64(readBlock)/frameSize)
	buf := make([]byte, blockFrames*frameSize)
	samples := make([]float32, 0, capFrames)
	left := size
	for {
		want := int64(len(buf))
		if known {
			want = min(want, left)
			if want == 0 {
				break
			}
		}
		n, err := io.ReadFull(d.in, buf[:want])
		left -= int64(n)
		whole := int64(n) - int64(n)%frameSize
		var derr error
		if samples, derr = decodeFrames(samples, buf[:whole], f); derr != nil {
			return Clip{}, derr
		}
		if !known {
			if lerr := d.tooLong(int64(len(samples)), f.rate); lerr != nil {
				return Clip{}, lerr
			}
		}
		if err != nil {
			if !known && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				break
			}
			return Clip{}, d.readErr(err, "data chunk")
		}
	}
	return Clip{Rate: f.rate, Samples: samples}, nil
}

// decodeFrames appends one mono sample (the channel average) per whole frame
// of b to dst.
func decodeFrames(dst []float32, b []byte, f wavFormat) ([]float32, error) {
	le := binary.LittleEndian
	if f.channels == 1 && f.bytes == 2 && !f.float {
		// The wire format, in one tight loop: v/2^15 is exact in float32,
		// so this is the general path's result, about five times faster.
		n := len(b) / 2
		dst = slices.Grow(dst, n)
		pcm16ToFloat(dst[len(dst):len(dst)+n], b[:2*n])
		return dst[:len(dst)+n], nil
	}
	fs := f.frameSize()
	inv := 1 / float64(f.channels)
	for off := 0; off+fs <= len(b); off += fs {
		fr := b[off : off+fs]
		// Sums are in float64: exact for up to 2^29 channels of 24-bit PCM.
		var sum float64
		switch {
		case f.float && f.bytes == 4:
			for c := 0; c < len(fr); c += 4 {
				sum += float64(math.Float32frombits(le.Uint32(fr[c:])))
			}
		case f.float:
			for c := 0; c < len(fr); c += 8 {
				sum += math.Float64frombits(le.Uint64(fr[c:]))
			}
		case f.bytes == 1:
			// 8-bit WAV is unsigned with 128 as zero.
			for _, v := range fr {
				sum += float64(int(v)-128) / (1 << 7)
			}
		case f.bytes == 2:
			for c := 0; c < len(fr); c += 2 {
				sum += float64(int16(le.Uint16(fr[c:]))) / (1 << 15)
			}
		case f.bytes == 3:
			for c := 0; c < len(fr); c += 3 {
				v := int32(uint32(fr[c])<<8|uint32(fr[c+1])<<16|uint32(fr[c+2])<<24) >> 8
				sum += float64(v) / (1 << 23)
			}
		default:
			for c := 0; c < len(fr); c += 4 {
				sum += float64(int32(le.Uint32(fr[c:]))) / (1 << 31)
			}
		}
		m := sum * inv
		if math.IsNaN(m) || math.IsInf(m, 0) {
			return dst, malformed("non-finite float sample in frame %d of the data chunk", len(dst))
		}
		// Integer PCM is already in [-1, 1); float may be louder: clamp.
		dst = append(dst, float32(max(-1, min(1, m))))
	}
	return dst, nil
}

// Encoding is a WAV sample encoding for the writer.
type Encoding int

const (
	// PCM16 is 16-bit signed integer PCM, the project's wire and storage
	// format. Samples are clipped to [-1, 1] and rounded.
	PCM16 Encoding = iota
	// Float32 is 32-bit IEEE float (format tag 3).
	Float32
)

func (e Encoding) String() string {
	switch e {
	case PCM16:
		return "PCM16"
	case Float32:
		return "Float32"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// WriteWAV writes c as a mono WAV file in the given encoding. NaN samples
// are written as 0 and infinities as full scale.
func WriteWAV(w io.Writer, c Clip, enc Encoding) error {
	hdr, err := wavHeader(c, enc)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("audio: write WAV header: %w", err)
	}
	bps := 2
	if enc == Float32 {
		bps = 4
	}
	buf := make([]byte, 0, readBlock)
	for i := 0; i < len(c.Samples); {
		n := min(len(c.Samples)-i, readBlock/bps)
		buf = appendSamples(buf[:0], c.Samples[i:i+n], enc)
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("audio: write WAV data: %w", err)
		}
		i += n
	}
	return nil
}

// EncodeWAV returns c as a mono WAV file in the given encoding.
func EncodeWAV(c Clip, enc Encoding) ([]byte, error) {
	hdr, err := wavHeader(c, enc)
	if err != nil {
		return nil, err
	}
	bps := 2
	if enc == Float32 {
		bps = 4
	}
	out := make([]byte, 0, len(hdr)+bps*len(c.Samples))
	out = append(out, hdr...)
	return appendSamples(out, c.Samples, enc), nil
}

func wavHeader(c Clip, enc Encoding) ([]byte, error) {
	if c.Rate <= 0 || int64(c.Rate) > math.MaxUint32/4 {
		return nil, fmt.Errorf("audio: Clip.Rate is %d Hz: want 1..%d", c.Rate, math.MaxUint32/4)
	}
	var tag, bps uint16
	var fmtSize uint32
	switch enc {
	case PCM16:
		tag, bps, fmtSize = tagPCM, 2, 16
	case Float32:
		// Non-PCM fmt chunks carry cbSize, and a fact chunk gives the
		// frame count.
		tag, bps, fmtSize = tagFloat, 4, 18
	default:
		return nil, fmt.Errorf("audio: unknown %v", enc)
	}
	dataSize := uint64(len(c.Samples)) * uint64(bps)
	riffSize := 4 + 8 + uint64(fmtSize) + 8 + dataSize
	if enc == Float32 {
		riffSize += 12
	}
	if riffSize > math.MaxUint32 {
		return nil, fmt.Errorf("audio: %d samples need %d bytes of data: a WAV file holds at most 4 GiB", len(c.Samples), dataSize)
	}
	le := binary.LittleEndian
	h := make([]byte, 0, 58)
	h = append(h, "RIFF"...)
	h = le.AppendUint32(h, uint32(riffSize))
	h = append(h, "WAVEfmt "...)
	h = le.AppendUint32(h, fmtSize)
	h = le.AppendUint16(h, tag)
	h = le.AppendUint16(h, 1) // channels
	h = le.AppendUint32(h, uint32(c.Rate))
	h = le.AppendUint32(h, uint32(c.Rate)*uint32(bps))
	h = le.AppendUint16(h, bps)
	h = le.AppendUint16(h, bps*8)
	if enc == Float32 {
		h = le.AppendUint16(h, 0) // cbSize
		h = append(h, "fact"...)
		h = le.AppendUint32(h, 4)
		h = le.AppendUint32(h, uint32(len(c.Samples)))
	}
	h = append(h, "data"...)
	h = le.AppendUint32(h, uint32(dataSize))
	return h, nil
}

func appendSamples(b []byte, x []float32, enc Encoding) []byte {
	le := binary.LittleEndian
	if enc == Float32 {
		for _, v := range x {
			switch {
			case v != v:
				v = 0
			case math.IsInf(float64(v), 1):
				v = 1
			case math.IsInf(float64(v), -1):
				v = -1
			}
			b = le.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	b = slices.Grow(b, 2*len(x))
	floatToPCM16(b[len(b):len(b)+2*len(x)], x)
	return b[:len(b)+2*len(x)]
}

// ToPCM16 converts a sample to 16-bit PCM: scaled by 32768 (the inverse of
// the reader's scaling, so PCM16 round-trips exactly), rounded half away from
// zero and clipped to [-32768, 32767]. NaN becomes 0.
func ToPCM16(v float32) int16 {
	s := float64(v) * (1 << 15) // exact: a float32 scaled by a power of two
	if s != s {
		return 0
	}
	// Plain comparisons: min and max must order NaN and signed zeros,
	// which costs more than these branches that audio rarely takes.
	if s > math.MaxInt16 {
		s = math.MaxInt16
	} else if s < math.MinInt16 {
		s = math.MinInt16
	}
	// s has at most 24 significant bits, so s±0.5 is exact and truncation
	// rounds half away from zero, as math.Round does, at a fraction of its
	// cost; Copysign keeps it free of a branch on the sign, which audio
	// would mispredict half the time.
	return int16(s + math.Copysign(0.5, s))
}

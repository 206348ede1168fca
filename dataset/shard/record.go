package shard

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Utterance is one spoken rendering of a record's phrase.
type Utterance struct {
	Lang    string  `json:"lang"`             // corpus language code, e.g. "fr"
	Speaker string  `json:"speaker"`          // stable speaker id, e.g. "m3/s160/p50"
	Canon   bool    `json:"canon,omitempty"`  // the clean reference rendering of its language
	Samples int     `json:"samples"`          // audio length in samples
	Size    int     `json:"size"`             // bytes of Audio
	Audio   []byte  `json:"-"`                // WAV, PCM16 mono at the manifest's rate
	Text    string  `json:"text,omitempty"`   // what the synthesizer was asked to say (never used by the model)
	Source  string  `json:"source,omitempty"` // where an imported utterance came from
	Seconds float64 `json:"seconds,omitempty"`
}

// Record is one phrase and every utterance of it.
type Record struct {
	Key        string      `json:"key"`   // phrase id, e.g. "num:42"
	Split      string      `json:"split"` // "train" or a held-out split name
	Utterances []Utterance `json:"utterances"`
}

const (
	magic = "BFR1"
	// MaxHeader bounds a record header, so a corrupt length never makes a
	// reader allocate gigabytes.
	MaxHeader = 16 << 20
	// MaxPayload bounds one record's audio.
	MaxPayload = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about bad shard bytes.
var ErrCorrupt = errors.New("corrupt record")

// CorruptError names where in which shard a record is bad.
type CorruptError struct {
	Shard  string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("shard %s: corrupt record at byte offset %d: %s", e.Shard, e.Offset, e.Reason)
}

// Unwrap lets errors.Is(err, ErrCorrupt) match.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// AppendRecord appends the encoding of r to dst: magic, header length
// (uint32 LE), JSON header, audio payloads in utterance order, CRC-32C (LE)
// of everything before it. Sizes are filled in from the audio.
func AppendRecord(dst []byte, r *Record) ([]byte, error) {
	h := *r
	h.Utterances = make([]Utterance, len(r.Utterances))
	total := 0
	for i, u := range r.Utterances {
		u.Size = len(u.Audio)
		h.Utterances[i] = u
		total += u.Size
	}
	if total > MaxPayload {
		return dst, fmt.Errorf("shard: record %q: audio %d bytes exceeds the %d-byte limit per record", r.Key, total, MaxPayload)
	}
	hdr, err := json.Marshal(&h)
	if err != nil {
		return dst, err
	}
	if len(hdr) > MaxHeader {
		return dst, fmt.Errorf("shard: record %q: header %d bytes exceeds the %d-byte limit", r.Key, len(hdr), MaxHeader)
	}
	start := len(dst)
	dst = append(dst, magic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(hdr)))
	dst = append(dst, hdr...)
	for _, u := range r.Utterances {
		dst = append(dst, u.Audio...)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli)), nil
}

// Reader reads records from one shard stream in order.
type Reader struct {
	name string
	r    *bufio.Reader
	off  int64
	buf  []byte
}

// NewReader reads records from r; name is the shard's name for errors.
func NewReader(name string, r io.Reader) *Reader {
	return &Reader{name: name, r: bufio.NewReaderSize(r, 256<<10)}
}

// Offset is the byte offset of the next record.
func (rd *Reader) Offset() int64 { return rd.off }

func (rd *Reader) corrupt(at int64, format string, args ...any) error {
	return &CorruptError{Shard: rd.name, Offset: at, Reason: fmt.Sprintf(format, args...)}
}

// Next returns the next record, io.EOF after the last, or a *CorruptError.
// The record's audio slices are valid until the next call.
func (rd *Reader) Next() (*Record, error) {
	at := rd.off
	var pre [8]byte
	n, err := io.ReadFull(rd.r, pre[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		return nil, rd.corrupt(at, "truncated: %d bytes where a record header starts", n)
	}
	if err != nil {
		return nil, err
	}
	hlen, err := headerLen(pre[:])
	if err != nil {
		return nil, rd.corrupt(at, "%v", err)
	}
	rd.buf = append(rd.buf[:0], pre[:]...)
	if err := rd.readN(hlen); err != nil {
		return nil, rd.corrupt(at, "truncated header: %v", err)
	}
	rec, total, err := parseHeader(rd.buf[8:])
	if err != nil {
		return nil, rd.corrupt(at, "%v", err)
	}
	if err := rd.readN(total + 4); err != nil {
		return nil, rd.corrupt(at, "truncated payload: %v", err)
	}
	if err := finish(rec, rd.buf, hlen); err != nil {
		return nil, rd.corrupt(at, "%v", err)
	}
	rd.off += int64(len(rd.buf))
	return rec, nil
}

// Parse decodes the record at data[off:] without copying: its audio slices
// point into data. It returns the offset of the next record. name and off
// go into a *CorruptError when the bytes are bad.
func Parse(name string, data []byte, off int64) (*Record, int64, error) {
	bad := func(format string, args ...any) error {
		return &CorruptError{Shard: name, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	if off < 0 || off > int64(len(data)) {
		return nil, off, bad("offset outside the shard's %d bytes", len(data))
	}
	b := data[off:]
	if len(b) < 8 {
		return nil, off, bad("truncated: %d bytes where a record header starts", len(b))
	}
	hlen, err := headerLen(b)
	if err != nil {
		return nil, off, bad("%v", err)
	}
	if len(b) < 8+hlen {
		return nil, off, bad("truncated header: %d of %d bytes", len(b)-8, hlen)
	}
	rec, total, err := parseHeader(b[8 : 8+hlen])
	if err != nil {
		return nil, off, bad("%v", err)
	}
	end := 8 + hlen + total + 4
	if len(b) < end {
		return nil, off, bad("truncated payload: %d of %d bytes", len(b)-8-hlen, total+4)
	}
	if err := finish(rec, b[:end:end], hlen); err != nil {
		return nil, off, bad("%v", err)
	}
	return rec, off + int64(end), nil
}

// headerLen checks a record's first 8 bytes and returns its header length.
func headerLen(pre []byte) (int, error) {
	if string(pre[:4]) != magic {
		return 0, fmt.Errorf("bad magic %q", pre[:4])
	}
	hlen := int(binary.LittleEndian.Uint32(pre[4:8]))
	if hlen > MaxHeader {
		return 0, fmt.Errorf("header length %d exceeds the %d-byte limit", hlen, MaxHeader)
	}
	return hlen, nil
}

// parseHeader decodes a JSON header and returns the audio bytes it declares.
func parseHeader(hdr []byte) (*Record, int, error) {
	var rec Record
	if err := json.Unmarshal(hdr, &rec); err != nil {
		return nil, 0, fmt.Errorf("header: %v", err)
	}
	total := 0
	for _, u := range rec.Utterances {
		if u.Size < 0 || u.Size > MaxPayload || total+u.Size > MaxPayload {
			return nil, 0, fmt.Errorf("audio sizes exceed the %d-byte limit per record", MaxPayload)
		}
		total += u.Size
	}
	return &rec, total, nil
}

// finish checks the CRC-32C of a whole record b and points the utterances'
// audio into it.
func finish(rec *Record, b []byte, hlen int) error {
	body := b[:len(b)-4]
	want := binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return fmt.Errorf("CRC-32C %08x, want %08x", got, want)
	}
	p := 8 + hlen
	for i := range rec.Utterances {
		sz := rec.Utterances[i].Size
		rec.Utterances[i].Audio = body[p : p+sz : p+sz]
		p += sz
	}
	return nil
}

// readN appends n more bytes to buf. It grows the buffer as data arrives,
// in steps of at most 1 MiB, so a corrupt length costs no more memory than
// the bytes that are really there.
func (rd *Reader) readN(n int) error {
	for n > 0 {
		step := min(n, 1<<20)
		old := len(rd.buf)
		rd.buf = append(rd.buf, make([]byte, step)...)
		if _, err := io.ReadFull(rd.r, rd.buf[old:]); err != nil {
			return err
		}
		n -= step
	}
	return nil
}

// Skip discards the rest of a corrupt shard: after a CorruptError the stream
// position is unknown, so a reader that skips bad data skips the shard's tail.
func (rd *Reader) Skip() (int64, error) {
	n, err := io.Copy(io.Discard, rd.r)
	rd.off += n
	return n, err
}

package shard

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func sampleRecords() []*Record {
	return []*Record{
		{Key: "num:1", Split: SplitTrain, Utterances: []Utterance{
			{Lang: "fr", Speaker: "m1/s160/p50", Samples: 3, Audio: []byte("abcdef")},
			{Lang: "de", Speaker: "f2/s140/p40", Canon: true, Samples: 2, Audio: []byte("wxyz")},
		}},
		{Key: "day:mon", Split: SplitUnseenPhrases, Utterances: []Utterance{
			{Lang: "ja", Speaker: "m1/s160/p50", Audio: nil},
		}},
		{Key: "empty", Split: SplitTrain},
	}
}

func encodeAll(t *testing.T, recs []*Record) []byte {
	t.Helper()
	var b []byte
	for _, r := range recs {
		var err error
		if b, err = AppendRecord(b, r); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	recs := sampleRecords()
	b := encodeAll(t, recs)
	rd := NewReader("shards/00000", bytes.NewReader(b))
	for i, want := range recs {
		got, err := rd.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got.Key != want.Key || got.Split != want.Split || len(got.Utterances) != len(want.Utterances) {
			t.Fatalf("record %d = %+v, want %+v", i, got, want)
		}
		for j, u := range got.Utterances {
			w := want.Utterances[j]
			if !bytes.Equal(u.Audio, w.Audio) || u.Lang != w.Lang || u.Speaker != w.Speaker || u.Canon != w.Canon || u.Size != len(w.Audio) {
				t.Errorf("record %d utterance %d = %+v, want %+v", i, j, u, w)
			}
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Errorf("after the last record: %v, want io.EOF", err)
	}
	if rd.Offset() != int64(len(b)) {
		t.Errorf("offset %d after reading %d bytes", rd.Offset(), len(b))
	}
}

func TestCorruptionNamesShardAndOffset(t *testing.T) {
	good := encodeAll(t, sampleRecords()[:1])
	second := len(good) // the second record starts here
	all := encodeAll(t, sampleRecords())
	flip := func(at int) []byte {
		b := bytes.Clone(all)
		b[at] ^= 0x40
		return b
	}
	tests := []struct {
		name   string
		data   []byte
		offset int64
		reason string
	}{
		{"payload bit flip", flip(second + 30), int64(second), "CRC-32C"},
		{"bad magic", flip(second), int64(second), "magic"},
		{"truncated payload", all[:len(all)-3], int64(len(encodeAll(t, sampleRecords()[:2]))), "truncated"},
		{"truncated prefix", all[:second+5], int64(second), "truncated"},
		{"huge header length", append(bytes.Clone(good), []byte("BFR1\xff\xff\xff\x7f")...), int64(second), "limit"},
		{"header not json", func() []byte {
			b := bytes.Clone(good)
			b = append(b, "BFR1\x02\x00\x00\x00{x"...)
			return b
		}(), int64(second), "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := NewReader("shards/00007", bytes.NewReader(tt.data))
			var err error
			for err == nil {
				_, err = rd.Next()
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want a CorruptError", err)
			}
			if ce.Shard != "shards/00007" || ce.Offset != tt.offset || !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("err = %v, want shard shards/00007 at offset %d mentioning %q", err, tt.offset, tt.reason)
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	ok := Manifest{FormatVersion: ManifestVersion, Name: "synth", Version: "v1", Records: 2, Utterances: 5,
		Shards: []ShardInfo{{Key: "shards/00000", Records: 2, Utterances: 5, SHA256: strings.Repeat("a", 64)}}}
	tests := []struct {
		name string
		edit func(*Manifest)
		want string
	}{
		{"valid", func(*Manifest) {}, ""},
		{"format", func(m *Manifest) { m.FormatVersion = 9 }, "format_version"},
		{"name", func(m *Manifest) { m.Name = "Bad/Name" }, "name"},
		{"version", func(m *Manifest) { m.Version = "" }, "version"},
		{"sha", func(m *Manifest) { m.Shards[0].SHA256 = "abc" }, "sha256"},
		{"counts", func(m *Manifest) { m.Records = 3 }, "records"},
	}
	for _, tt := range tests {
		m := ok
		m.Shards = append([]ShardInfo(nil), ok.Shards...)
		tt.edit(&m)
		err := m.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want error mentioning %q", tt.name, err, tt.want)
		}
	}
}

// FuzzReader: any bytes give records or a clean error, never a panic, and
// never more memory than the input justifies.
func FuzzReader(f *testing.F) {
	var b []byte
	for _, r := range sampleRecords() {
		b, _ = AppendRecord(b, r)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte("BFR1\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader("fuzz", bytes.NewReader(data))
		for i := 0; i < 1000; i++ {
			r, err := rd.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unexpected error type: %v", err)
				}
				return
			}
			// A record that decodes re-encodes to one that decodes the same.
			enc, err := AppendRecord(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := NewReader("again", bytes.NewReader(enc)).Next()
			if err != nil {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
			if r2.Key != r.Key || len(r2.Utterances) != len(r.Utterances) {
				t.Fatalf("round trip changed the record: %+v -> %+v", r, r2)
			}
			for j := range r.Utterances {
				if !bytes.Equal(r.Utterances[j].Audio, r2.Utterances[j].Audio) {
					t.Fatalf("round trip changed utterance %d audio", j)
				}
			}
		}
	})
}

// FuzzParse checks the zero-copy Parse agrees with the streaming Reader on
// any bytes: the same records, the same offsets, corrupt where it is.
func FuzzParse(f *testing.F) {
	var b []byte
	for _, r := range sampleRecords() {
		b, _ = AppendRecord(b, r)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Add([]byte("BFR1\xff\xff\xff\x7f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader("fuzz", bytes.NewReader(data))
		var off int64
		for i := 0; i < 1000; i++ {
			r, rerr := rd.Next()
			p, next, perr := Parse("fuzz", data, off)
			if rerr == io.EOF {
				if off != int64(len(data)) {
					t.Fatalf("reader at EOF at %d of %d", off, len(data))
				}
				return
			}
			if (rerr == nil) != (perr == nil) {
				t.Fatalf("at %d: reader %v, parse %v", off, rerr, perr)
			}
			if perr != nil {
				var ce *CorruptError
				if !errors.As(perr, &ce) || ce.Offset != off {
					t.Fatalf("parse error %v: want a CorruptError at %d", perr, off)
				}
				return
			}
			if next != rd.Offset() || p.Key != r.Key || len(p.Utterances) != len(r.Utterances) {
				t.Fatalf("at %d: parse gave %+v next %d, reader %+v next %d", off, p, next, r, rd.Offset())
			}
			for j := range r.Utterances {
				if !bytes.Equal(r.Utterances[j].Audio, p.Utterances[j].Audio) {
					t.Fatalf("utterance %d audio differs", j)
				}
			}
			off = next
		}
	})
}

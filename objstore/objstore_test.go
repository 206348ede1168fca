package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/minio/minio-go/v7"
)

// streamOnly hides ReaderAt and Seek, so PutReader takes the streaming path.
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRoundTrip(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	ctx := context.Background()
	const ps = MinPartSize
	sizes := []int{0, 1, 64 << 10, ps, ps + 1, 2*ps + 12345}
	puts := []struct {
		name string
		put  func(key string, data []byte) (ObjectInfo, error)
	}{
		{"Put", func(k string, d []byte) (ObjectInfo, error) { return c.Put(ctx, k, d) }},
		{"PutReader/readerat", func(k string, d []byte) (ObjectInfo, error) {
			return c.PutReader(ctx, k, bytes.NewReader(d), int64(len(d)))
		}},
		{"PutReader/stream-sized", func(k string, d []byte) (ObjectInfo, error) {
			return c.PutReader(ctx, k, streamOnly{iotest.HalfReader(bytes.NewReader(d))}, int64(len(d)))
		}},
		{"PutReader/stream-unsized", func(k string, d []byte) (ObjectInfo, error) {
			return c.PutReader(ctx, k, streamOnly{bytes.NewReader(d)}, -1)
		}},
	}
	for _, p := range puts {
		for i, size := range sizes {
			t.Run(p.name+"/"+itoa(size), func(t *testing.T) {
				data := testData(size, byte(i))
				key := "rt/" + p.name + "/" + itoa(size)
				info, err := p.put(key, data)
				if err != nil {
					t.Fatalf("put: %v", err)
				}
				if info.SHA256 != sum(data) || info.Size != int64(size) {
					t.Fatalf("put info sha %s size %d, want %s %d", info.SHA256, info.Size, sum(data), size)
				}
				st, err := c.Stat(ctx, key)
				if err != nil || st.SHA256 != sum(data) || st.Size != int64(size) {
					t.Fatalf("stat: %+v, %v", st, err)
				}
				got, gi, err := c.Get(ctx, key)
				if err != nil || !bytes.Equal(got, data) || gi.SHA256 != info.SHA256 {
					t.Fatalf("Get: %d bytes, err %v; want %d bytes", len(got), err, size)
				}
				r, err := c.GetReader(ctx, key)
				if err != nil {
					t.Fatalf("GetReader: %v", err)
				}
				defer r.Close()
				var buf bytes.Buffer
				if _, err := io.Copy(&buf, r); err != nil || !bytes.Equal(buf.Bytes(), data) {
					t.Fatalf("GetReader: %d bytes, err %v; want %d bytes", buf.Len(), err, size)
				}
			})
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPutReaderLeavesOffset checks a ReaderAt source is left positioned
// after what was written, like a plain read.
func TestPutReaderLeavesOffset(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	r := bytes.NewReader(testData(1000, 1))
	if _, err := r.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	info, err := c.PutReader(context.Background(), "off", r, 500)
	if err != nil {
		t.Fatal(err)
	}
	if pos, _ := r.Seek(0, io.SeekCurrent); pos != 600 || info.SHA256 != sum(testData(1000, 1)[100:600]) {
		t.Fatalf("reader at %d (want 600), sha %s", pos, info.SHA256)
	}
}

// TestChecksumMismatch corrupts objects behind the package's back with
// plain minio-go, keeping the recorded checksums, and checks every read
// path catches it, with the CRC-32C (the default) and with sha256 reads.
func TestChecksumMismatch(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	sc := *c
	sc.sha256Reads = true
	raw := rawClient(t, nil)
	ctx := context.Background()
	crcOf := func(b []byte) string { return crc32cHex(crc32.Checksum(b, castagnoli)) }
	for _, size := range []int{1000, 2*MinPartSize + 7} {
		key := "corrupt/" + itoa(size)
		good := testData(size, 1)
		info, err := c.Put(ctx, key, good)
		if err != nil {
			t.Fatal(err)
		}
		if info.CRC32C != crcOf(good) {
			t.Fatalf("put recorded CRC-32C %q, want %q", info.CRC32C, crcOf(good))
		}
		bad := bytes.Clone(good)
		bad[len(bad)/2] ^= 0x40
		if _, err := raw.PutObject(ctx, c.Bucket(), key, bytes.NewReader(bad), int64(len(bad)),
			minio.PutObjectOptions{UserMetadata: map[string]string{metaSHA256: info.SHA256, metaCRC32C: info.CRC32C}}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name          string
			c             *Client
			alg, exp, got string
		}{
			{"crc32c", c, algCRC32C, crcOf(good), crcOf(bad)},
			{"sha256", &sc, algSHA256, sum(good), sum(bad)},
		} {
			t.Run(itoa(size)+"/"+tc.name, func(t *testing.T) {
				_, _, err = tc.c.Get(ctx, key)
				var ce *ChecksumError
				if !errors.As(err, &ce) || !errors.Is(err, ErrChecksum) {
					t.Fatalf("Get: got %v, want a ChecksumError", err)
				}
				if ce.Key != key || ce.Algorithm != tc.alg || ce.Expected != tc.exp || ce.Actual != tc.got {
					t.Fatalf("ChecksumError %+v; want key %s %s expected %s actual %s", ce, key, tc.alg, tc.exp, tc.got)
				}
				r, err := tc.c.GetReader(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if !errors.As(err, &ce) || ce.Algorithm != tc.alg || n != int64(size) {
					t.Fatalf("GetReader: read %d, err %v; want all %d bytes then a %s ChecksumError", n, err, size, tc.alg)
				}
			})
		}
	}
	t.Run("sha256 only recorded", func(t *testing.T) {
		// Objects stamped before the CRC-32C was recorded are read with sha256.
		good := testData(5000, 3)
		bad := bytes.Clone(good)
		bad[7] ^= 1
		if _, err := raw.PutObject(ctx, c.Bucket(), "old", bytes.NewReader(bad), int64(len(bad)),
			minio.PutObjectOptions{UserMetadata: map[string]string{metaSHA256: sum(good)}}); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Get(ctx, "old")
		var ce *ChecksumError
		if !errors.As(err, &ce) || ce.Algorithm != algSHA256 || ce.Expected != sum(good) {
			t.Fatalf("got %v, want a sha256 ChecksumError", err)
		}
	})
	t.Run("no recorded sum", func(t *testing.T) {
		if _, err := raw.PutObject(ctx, c.Bucket(), "foreign", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Get(ctx, "foreign")
		var ce *ChecksumError
		if !errors.As(err, &ce) || ce.Expected != "" {
			t.Fatalf("got %v, want a ChecksumError with no expected sum", err)
		}
		if _, err := c.GetReader(ctx, "foreign"); !errors.Is(err, ErrChecksum) {
			t.Fatalf("GetReader: got %v, want ErrChecksum", err)
		}
	})
}

// TestNotFoundIsFinal checks a missing key is ErrNotFound at once: no
// retries, however many are allowed.
func TestNotFoundIsFinal(t *testing.T) {
	c, warns := newTestClient(t, nil, func(cfg *Config) {
		cfg.MaxRetries = 10
		cfg.RetryBaseDelay = time.Second
		cfg.RetryMaxDelay = 5 * time.Second
	})
	ctx := context.Background()
	start := time.Now()
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, _, err := c.Get(ctx, "missing"); return err }},
		{"GetReader", func() error { _, err := c.GetReader(ctx, "missing"); return err }},
		{"Stat", func() error { _, err := c.Stat(ctx, "missing"); return err }},
		{"Copy", func() error { _, err := c.Copy(ctx, "missing", "elsewhere"); return err }},
	}
	for _, tc := range calls {
		if err := tc.call(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", tc.name, err)
		}
	}
	if n := warns.Load(); n != 0 || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("%d retries in %v for missing keys; want none", n, time.Since(start))
	}
	if err := c.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
}

func TestNoBucketAndAccessDenied(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(shared)
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", []byte("x")); !errors.Is(err, ErrNoBucket) {
		t.Fatalf("put into missing bucket: got %v, want ErrNoBucket", err)
	}
	cfg.SecretKey = "wrong-secret"
	warns := new(atomic.Int64)
	bad, err := New(ctx, cfg, WithLogger(slog.New(logCounter{t: t, warns: warns})))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = bad.Put(ctx, "k", []byte("x"))
	if err == nil || errors.Is(err, ErrNotFound) || warns.Load() != 0 || time.Since(start) > time.Second {
		t.Fatalf("wrong secret: got %v after %d retries; want a prompt signature error", err, warns.Load())
	}
}

func TestIfAbsent(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	ctx := context.Background()
	if _, err := c.Put(ctx, "once", []byte("a"), IfAbsent()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "once", []byte("b"), IfAbsent()); !errors.Is(err, ErrExists) {
		t.Fatalf("second IfAbsent put: got %v, want ErrExists", err)
	}
	got, _, err := c.Get(ctx, "once")
	if err != nil || string(got) != "a" {
		t.Fatalf("got %q, %v; want the first write", got, err)
	}
	// Multipart: the condition is checked when the upload completes.
	big := testData(MinPartSize+1, 7)
	if _, err := c.Put(ctx, "once-big", big, IfAbsent()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "once-big", testData(MinPartSize+1, 8), IfAbsent()); !errors.Is(err, ErrExists) {
		t.Fatalf("second multipart IfAbsent put: got %v, want ErrExists", err)
	}
	if got, _, err := c.Get(ctx, "once-big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("multipart: got %d bytes, %v; want the first write", len(got), err)
	}
}

func TestListDeleteCopy(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	ctx := context.Background()
	for _, k := range []string{"a/1", "a/2", "a/b/3", "c"} {
		if _, err := c.Put(ctx, k, []byte(k), WithMetadata(map[string]string{"Origin": "test"}), WithContentType("text/plain")); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"a/", true, []string{"a/1", "a/2", "a/b/3"}},
		{"a/", false, []string{"a/1", "a/2", "a/b/"}},
		{"", true, []string{"a/1", "a/2", "a/b/3", "c"}},
		{"zz/", true, nil},
	}
	for _, tt := range tests {
		objs, err := c.List(ctx, tt.prefix, tt.recursive)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
			if o.IsPrefix != (o.Key == "a/b/") {
				t.Errorf("List(%q): %s IsPrefix=%v", tt.prefix, o.Key, o.IsPrefix)
			}
		}
		if !equalStrings(keys, tt.want) {
			t.Errorf("List(%q, %v) = %v, want %v", tt.prefix, tt.recursive, keys, tt.want)
		}
	}
	info, err := c.Copy(ctx, "a/1", "d/1")
	if err != nil || info.SHA256 != sum([]byte("a/1")) || info.Metadata["Origin"] != "test" || info.ContentType != "text/plain" {
		t.Fatalf("copy: %+v, %v", info, err)
	}
	if got, _, err := c.Get(ctx, "d/1"); err != nil || string(got) != "a/1" {
		t.Fatalf("get copy: %q, %v", got, err)
	}
	n, err := c.DeletePrefix(ctx, "a/")
	if err != nil || n != 3 {
		t.Fatalf("DeletePrefix: %d, %v; want 3", n, err)
	}
	if objs, _ := c.List(ctx, "", true); len(objs) != 2 {
		t.Fatalf("left after DeletePrefix: %v", objs)
	}
	if _, err := c.DeletePrefix(ctx, ""); err == nil {
		t.Fatal("DeletePrefix(\"\") deleted the bucket's contents")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// failingReader returns n bytes and then an error, as a broken pipe would.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// TestStreamFailureLeavesNothing checks a stream that breaks after some
// parts went up leaves neither an object nor an unfinished upload.
func TestStreamFailureLeavesNothing(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	raw := rawClient(t, nil)
	ctx := context.Background()
	boom := errors.New("source broke")
	_, err := c.PutReader(ctx, "broken", &failingReader{data: testData(3*MinPartSize+10, 2), err: boom}, -1)
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the reader's error", err)
	}
	if _, err := c.Stat(ctx, "broken"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat after failed put: %v, want ErrNotFound", err)
	}
	for u := range raw.ListIncompleteUploads(ctx, c.Bucket(), "broken", true) {
		t.Fatalf("upload left behind: %+v", u)
	}
	// A sized stream that ends early is an error too.
	if _, err := c.PutReader(ctx, "short", streamOnly{bytes.NewReader(make([]byte, 10))}, 20); err == nil {
		t.Fatal("short sized stream accepted")
	}
}

// TestServerChecksTransfer sends bodies whose declared checksums are wrong,
// through the package's own request paths: the server must refuse them,
// which is what makes a put's returned sha256 trustworthy.
func TestServerChecksTransfer(t *testing.T) {
	c, warns := newTestClient(t, nil, nil)
	ctx := context.Background()
	data := testData(1000, 5)
	wrong := sum([]byte("something else"))
	_, err := c.putSingle(ctx, "wrong-sum", func() io.Reader { return bytes.NewReader(data) }, int64(len(data)), sums{sha256: wrong, crc32c: "00000000"}, putOptions{})
	if err == nil {
		t.Fatal("single PUT with a wrong sha256 accepted")
	}
	if _, serr := c.Stat(ctx, "wrong-sum"); !errors.Is(serr, ErrNotFound) {
		t.Fatalf("object stored despite a bad sha256 (put error %v)", err)
	}

	part := testData(MinPartSize, 6)
	_, err = c.multipart(ctx, "wrong-crc", putOptions{}, sums{sha256: sum(part), crc32c: "00000000"}, func(ctx context.Context, jobs chan<- partJob) (int64, error) {
		jobs <- partJob{num: 1, size: int64(len(part)), crc: crc32cBase64(12345),
			body: func() io.Reader { return bytes.NewReader(part) }}
		return int64(len(part)), nil
	})
	if err == nil {
		t.Fatal("part with a wrong CRC32C accepted")
	}
	if _, serr := c.Stat(ctx, "wrong-crc"); !errors.Is(serr, ErrNotFound) {
		t.Fatalf("object stored despite a bad part CRC32C (put error %v)", err)
	}
	if warns.Load() != 0 {
		t.Fatalf("%d retries of a checksum refusal; it is not transient", warns.Load())
	}
	t.Logf("refusals: %v", err)
}

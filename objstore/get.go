package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/minio/minio-go/v7"
)

// readBufSize is the chunk WriteTo moves at a time: large enough that
// per-call overhead vanishes next to hashing and copying.
const readBufSize = 256 << 10

// Get reads a whole object into memory and checks it against its recorded
// sha256 and size. A transient failure retries the whole read.
func (c *Client) Get(ctx context.Context, key string) ([]byte, ObjectInfo, error) {
	return c.getAll(ctx, key, true)
}

// GetUnverified reads a whole object that may carry no recorded sha256,
// such as a corpus put in the bucket by other tools. When a sha256 is
// recorded it is still checked.
func (c *Client) GetUnverified(ctx context.Context, key string) ([]byte, error) {
	data, _, err := c.getAll(ctx, key, false)
	return data, err
}

func (c *Client) getAll(ctx context.Context, key string, needSum bool) ([]byte, ObjectInfo, error) {
	return c.getAllCheck(ctx, key, needSum, func(info ObjectInfo) (string, string, error) {
		alg, sum := c.readCheck(info, info.SHA256)
		return alg, sum, nil
	})
}

// getAllCheck is getAll where check picks the algorithm and the sum the
// content must have from the object's info, or refuses the object before
// its body is read; algNone reads without hashing.
func (c *Client) getAllCheck(ctx context.Context, key string, needSum bool, check func(ObjectInfo) (alg, sum string, err error)) ([]byte, ObjectInfo, error) {
	var data []byte
	var info ObjectInfo
	err := c.do(ctx, "get", key, func(ctx context.Context) error {
		body, oi, _, err := c.core.GetObject(ctx, c.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		info = toInfo(oi)
		if needSum && info.SHA256 == "" {
			return &ChecksumError{Key: key}
		}
		data = make([]byte, info.Size)
		alg, want, err := check(info)
		if err != nil {
			return err
		}
		if alg == algNone {
			if n, err := io.ReadFull(body, data); err != nil {
				return fmt.Errorf("read body at byte %d of %d: %w", n, len(data), err)
			}
			return nil
		}
		got, err := readAndHash(body, data, alg)
		if err != nil {
			return err
		}
		if want != "" && got != want {
			return &ChecksumError{Key: key, Algorithm: alg, Expected: want, Actual: got}
		}
		return nil
	})
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return data, info, nil
}

// Checksum algorithms a read verifies with.
const (
	algSHA256 = "sha256"
	algCRC32C = "crc32c"
	// algNone: the caller checks the content itself (GetSelfChecked).
	algNone = "none"
)

// readCheck says how a read of an object described by info verifies its
// content: the CRC-32C recorded with it unless sha256 reads were asked for
// or none is recorded, else the sha256 want (which, for an artifact part,
// is the manifest's; the caller has already compared it with the sha256
// recorded on the object).
func (c *Client) readCheck(info ObjectInfo, want string) (alg, sum string) {
	if !c.sha256Reads && info.CRC32C != "" && info.SHA256 != "" && info.SHA256 == want {
		return algCRC32C, info.CRC32C
	}
	return algSHA256, want
}

func newHash(alg string) hash.Hash {
	if alg == algCRC32C {
		return crc32.New(castagnoli)
	}
	return sha256.New()
}

// readAndHash fills data from body and returns the hex checksum (alg) of
// it. For large objects a second goroutine hashes each chunk once it has
// arrived, so hashing overlaps the transfer when a core is free.
func readAndHash(body io.Reader, data []byte, alg string) (string, error) {
	if len(data) < 2*readBufSize {
		if n, err := io.ReadFull(body, data); err != nil {
			return "", fmt.Errorf("read body at byte %d of %d: %w", n, len(data), err)
		}
		h := newHash(alg)
		h.Write(data)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if alg == algCRC32C {
		// CRC-32C runs at memory speed: hashing in line costs less than
		// handing chunks to another goroutine.
		h := newHash(alg)
		off := 0
		for off < len(data) {
			n, err := io.ReadFull(body, data[off:min(off+readBufSize, len(data))])
			h.Write(data[off : off+n])
			off += n
			if err != nil {
				return "", fmt.Errorf("read body at byte %d of %d: %w", off, len(data), err)
			}
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	ends := make(chan int, 8) // how far data is filled; the hasher trails it
	sum := make(chan string, 1)
	go func() {
		h := newHash(alg)
		prev := 0
		for end := range ends {
			h.Write(data[prev:end])
			prev = end
		}
		sum <- hex.EncodeToString(h.Sum(nil))
	}()
	off := 0
	var err error
	for off < len(data) && err == nil {
		var n int
		n, err = io.ReadFull(body, data[off:min(off+readBufSize, len(data))])
		off += n
		if n > 0 {
			ends <- off
		}
	}
	close(ends)
	got := <-sum
	if err != nil {
		return "", fmt.Errorf("read body at byte %d of %d: %w", off, len(data), err)
	}
	return got, nil
}

// GetReader opens an object for streaming. The returned Reader hashes what
// it hands out and, at the end, returns a *ChecksumError instead of io.EOF
// if the content is not what was written. A transient failure mid-read is
// resumed from the same byte of the same object version.
func (c *Client) GetReader(ctx context.Context, key string) (*Reader, error) {
	return c.openReader(ctx, key, "", -1)
}

// openReader opens key; want and wantSize, when set, override the sha256
// and size recorded on the object (an artifact's manifest).
func (c *Client) openReader(ctx context.Context, key, want string, wantSize int64) (*Reader, error) {
	r := &Reader{c: c, ctx: ctx, key: key}
	if err := c.do(ctx, "get", key, r.open); err != nil {
		return nil, err
	}
	if want == "" {
		want = r.info.SHA256
	}
	if want == "" {
		r.Close()
		return nil, &ChecksumError{Key: key}
	}
	if wantSize < 0 {
		wantSize = r.info.Size
	}
	r.alg, r.want = c.readCheck(r.info, want)
	r.h, r.wantSize = newHash(r.alg), wantSize
	// A part replaced after its manifest was written is caught before any
	// byte is read when it was written by this package.
	if r.info.SHA256 != "" && r.info.SHA256 != want {
		r.Close()
		return nil, &ChecksumError{Key: key, Expected: want, Actual: r.info.SHA256}
	}
	if r.info.Size != wantSize {
		r.Close()
		return nil, &SizeError{Key: key, Expected: wantSize, Actual: r.info.Size}
	}
	return r, nil
}

// Reader streams one object and verifies it at EOF. It is not safe for
// concurrent use.
type Reader struct {
	c    *Client
	ctx  context.Context
	key  string
	body io.ReadCloser
	info ObjectInfo

	alg      string // algSHA256 or algCRC32C
	want     string // hex checksum (alg) the content must have
	wantSize int64
	h        hash.Hash
	off      int64
	err      error // sticky: once set, every Read returns it
}

// Info describes the object being read.
func (r *Reader) Info() ObjectInfo { return r.info }

// open (re)opens the body at r.off, pinned to the ETag first seen so a
// resumed read cannot splice two versions together.
func (r *Reader) open(ctx context.Context) error {
	var opts minio.GetObjectOptions
	if r.off > 0 {
		if err := opts.SetRange(r.off, 0); err != nil {
			return err
		}
		if err := opts.SetMatchETag(r.info.ETag); err != nil {
			return err
		}
	}
	body, oi, _, err := r.c.core.GetObject(ctx, r.c.bucket, r.key, opts)
	if err != nil {
		if r.off > 0 && minio.ToErrorResponse(err).StatusCode == 412 {
			return fmt.Errorf("object changed while it was being read: %w", err)
		}
		return err
	}
	if r.off == 0 {
		r.info = toInfo(oi)
	}
	r.body = body
	return nil
}

func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.fill(p)
	r.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		err = r.verify()
	}
	r.err = err
	return n, err
}

// fill reads the next bytes of the body into p, resuming after transient
// failures. It returns io.EOF at the end and does not hash.
func (r *Reader) fill(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		switch {
		case err == nil || errors.Is(err, io.EOF):
			return n, err
		case transient(err) && r.ctx.Err() == nil:
			if rerr := r.resume(err); rerr != nil {
				return n, rerr
			}
			if n > 0 {
				return n, nil
			}
		default:
			return n, r.c.wrap("get", r.key, err)
		}
	}
}

// WriteTo copies the rest of the object to w. Large objects are read from
// the network on a second goroutine while this one hashes and writes, so
// the sha256 costs little wall time when a core is free.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	if r.err != nil {
		if errors.Is(r.err, io.EOF) {
			return 0, nil
		}
		return 0, r.err
	}
	left := r.wantSize - r.off
	if left < 2*readBufSize {
		return r.copySerial(w, left)
	}
	type chunk struct {
		buf []byte
		n   int
		err error
	}
	const depth = 4
	free := make(chan []byte, depth)
	for range depth {
		free <- make([]byte, readBufSize)
	}
	full := make(chan chunk, depth)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := r.fill(buf)
			full <- chunk{buf, n, err}
			if err != nil {
				return
			}
		}
	}()
	var total int64
	var err error
	for c := range full {
		r.h.Write(c.buf[:c.n])
		m, werr := w.Write(c.buf[:c.n])
		total += int64(m)
		free <- c.buf
		switch {
		case werr != nil:
			err = werr
		case errors.Is(c.err, io.EOF):
			r.err = r.verify()
			if !errors.Is(r.err, io.EOF) {
				err = r.err
			}
		case c.err != nil:
			r.err, err = c.err, c.err
		}
		if err != nil || c.err != nil {
			break
		}
	}
	close(stop)
	for range full { // let the reader goroutine finish its last fill
	}
	<-done
	return total, err
}

// copySerial is WriteTo for small remainders, where a goroutine costs more
// than it saves.
func (r *Reader) copySerial(w io.Writer, left int64) (int64, error) {
	// A buffer the object's size (+1 to see EOF in one call).
	buf := make([]byte, min(readBufSize, max(left+1, 512)))
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (r *Reader) resume(cause error) error {
	r.body.Close()
	r.c.log.Warn("objstore: read interrupted, resuming", "bucket", r.c.bucket, "key", r.key, "offset", r.off, "err", cause)
	return r.c.do(r.ctx, "get (resume)", r.key, r.open)
}

func (r *Reader) verify() error {
	if r.off != r.wantSize {
		return &SizeError{Key: r.key, Expected: r.wantSize, Actual: r.off}
	}
	if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want {
		return &ChecksumError{Key: r.key, Algorithm: r.alg, Expected: r.want, Actual: got}
	}
	return io.EOF
}

// Close releases the connection. Closing before EOF skips verification.
func (r *Reader) Close() error {
	if r.err == nil {
		r.err = errors.New("objstore: read after close")
	}
	if r.body == nil {
		return nil
	}
	return r.body.Close()
}

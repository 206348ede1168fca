package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

const (
	// maxParts is S3's limit on parts per multipart upload.
	maxParts = 10000
	// abortTimeout bounds cleaning up after a failed multipart upload.
	abortTimeout = 30 * time.Second
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PutOption changes one write.
type PutOption func(*putOptions)

type putOptions struct {
	contentType string
	metadata    map[string]string
	ifAbsent    bool
}

// WithContentType sets the object's Content-Type.
func WithContentType(ct string) PutOption { return func(o *putOptions) { o.contentType = ct } }

// WithMetadata stores extra user metadata (x-amz-meta-*) with the object.
func WithMetadata(m map[string]string) PutOption {
	return func(o *putOptions) { o.metadata = maps.Clone(m) }
}

// IfAbsent makes the write fail with ErrExists when the key already exists,
// so two writers cannot both think they created it.
func IfAbsent() PutOption { return func(o *putOptions) { o.ifAbsent = true } }

func collectPut(opts []PutOption) putOptions {
	var po putOptions
	for _, o := range opts {
		o(&po)
	}
	return po
}

// Put stores data under key with its sha256 and returns its info, SHA256
// included. Objects over the part size go up as a parallel multipart upload.
func (c *Client) Put(ctx context.Context, key string, data []byte, opts ...PutOption) (ObjectInfo, error) {
	return c.putReaderAt(ctx, key, bytes.NewReader(data), int64(len(data)), data, collectPut(opts))
}

// PutReader stores size bytes read from r, or everything up to EOF when size
// is -1. Readers that can seek and ReadAt (files, bytes.Reader) are hashed
// first and uploaded part by part in parallel, with each part retried on
// its own. Other readers are streamed: each part is hashed as it is read.
func (c *Client) PutReader(ctx context.Context, key string, r io.Reader, size int64, opts ...PutOption) (ObjectInfo, error) {
	po := collectPut(opts)
	if size >= 0 {
		ra, isRA := r.(io.ReaderAt)
		sk, isSeeker := r.(io.Seeker)
		if isRA && isSeeker {
			off, err := sk.Seek(0, io.SeekCurrent)
			if err != nil {
				return ObjectInfo{}, c.wrap("put", key, err)
			}
			info, err := c.putReaderAt(ctx, key, io.NewSectionReader(ra, off, size), size, nil, po)
			if err == nil {
				// Leave r where a plain read of size bytes would have.
				_, err = sk.Seek(off+size, io.SeekStart)
			}
			return info, err
		}
	}
	return c.putStream(ctx, key, r, size, po)
}

// partLayout returns the part size for an object of size bytes (-1: not
// known), growing the configured size when S3's part limit needs it.
func (c *Client) partLayout(size int64) int64 {
	ps := c.cfg.PartSize
	if size > ps*maxParts {
		ps = (size + maxParts - 1) / maxParts
		ps = (ps + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	return ps
}

// putReaderAt writes an object whose bytes can be read again for retries.
// data, when not nil, is the same content in memory, hashed without a copy.
func (c *Client) putReaderAt(ctx context.Context, key string, ra io.ReaderAt, size int64, data []byte, po putOptions) (ObjectInfo, error) {
	partSize := c.partLayout(size)
	// The whole-object sha256 must go out with the first request (user
	// metadata is set when an upload starts), so hash before uploading;
	// the per-part CRC32Cs come from the same pass.
	var sum sums
	var crcs []string
	var err error
	if data != nil {
		sum, crcs = hashBytes(data, partSize)
	} else if sum, crcs, err = hashReaderAt(ctx, ra, size, partSize); err != nil {
		return ObjectInfo{}, c.wrap("put", key, err)
	}
	if size <= partSize {
		return c.putSingle(ctx, key, func() io.Reader { return io.NewSectionReader(ra, 0, size) }, size, sum, po)
	}
	nparts := len(crcs)
	info, err := c.multipart(ctx, key, po, sum, func(ctx context.Context, jobs chan<- partJob) (int64, error) {
		for i := range nparts {
			off := int64(i) * partSize
			n := min(partSize, size-off)
			job := partJob{
				num:  i + 1,
				size: n,
				crc:  crcs[i],
				body: func() io.Reader { return io.NewSectionReader(ra, off, n) },
			}
			select {
			case jobs <- job:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return size, nil
	})
	if err != nil {
		return ObjectInfo{}, err
	}
	return info, nil
}

// putSingle writes an object in one PUT. The sha256 is the signed payload
// hash, so the server checks the bytes it received against it, and it is
// kept as user metadata for readers.
func (c *Client) putSingle(ctx context.Context, key string, body func() io.Reader, size int64, sum sums, po putOptions) (ObjectInfo, error) {
	opts := minio.PutObjectOptions{
		UserMetadata:         c.userMeta(po, sum),
		ContentType:          po.contentType,
		DisableContentSha256: true, // sign the known sum instead of streaming chunk signatures
	}
	if po.ifAbsent {
		opts.SetMatchETagExcept("*")
	}
	var ui minio.UploadInfo
	err := c.do(ctx, "put", key, func(ctx context.Context) error {
		var err error
		ui, err = c.core.PutObject(ctx, c.bucket, key, body(), size, "", sum.sha256, opts)
		return err
	})
	if err != nil {
		return ObjectInfo{}, err
	}
	return c.putInfo(key, size, sum, ui, po), nil
}

// sums are the checksums of one object's content, hex encoded; both empty
// while a streamed write has not seen all of it.
type sums struct{ sha256, crc32c string }

func (c *Client) userMeta(po putOptions, sum sums) map[string]string {
	m := make(map[string]string, len(po.metadata)+2)
	maps.Copy(m, po.metadata)
	if sum.sha256 != "" {
		m[metaSHA256] = sum.sha256
		m[metaCRC32C] = sum.crc32c
	}
	return m
}

func (c *Client) putInfo(key string, size int64, sum sums, ui minio.UploadInfo, po putOptions) ObjectInfo {
	return ObjectInfo{
		Key:          key,
		Size:         size,
		SHA256:       sum.sha256,
		CRC32C:       sum.crc32c,
		ETag:         ui.ETag,
		ContentType:  po.contentType,
		LastModified: ui.LastModified,
		Metadata:     maps.Clone(po.metadata),
	}
}

// partJob is one part to upload. body returns a fresh reader of the part
// for every attempt; done, if set, is called once the part is finished with.
type partJob struct {
	num  int
	size int64
	crc  string // base64 CRC32C, checked by the server
	body func() io.Reader
	done func()
}

// multipart runs one multipart upload: produce sends the parts and returns
// the total size; Concurrency workers upload them, each part retried on its
// own. If sum is empty (a stream, hashed while it is read), produce's
// returned sum is unknown up front and is stamped onto the object after
// completion; see putStream.
func (c *Client) multipart(ctx context.Context, key string, po putOptions, sum sums,
	produce func(ctx context.Context, jobs chan<- partJob) (int64, error),
) (ObjectInfo, error) {
	meta := c.userMeta(po, sum)
	// Declaring the algorithm makes the server keep and check each part's CRC32C.
	meta["X-Amz-Checksum-Algorithm"] = "CRC32C"
	createOpts := minio.PutObjectOptions{UserMetadata: meta, ContentType: po.contentType}
	var uploadID string
	if err := c.do(ctx, "put", key, func(ctx context.Context) error {
		var err error
		uploadID, err = c.core.NewMultipartUpload(ctx, c.bucket, key, createOpts)
		return err
	}); err != nil {
		return ObjectInfo{}, err
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		parts    []minio.CompletePart
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	jobs := make(chan partJob)
	for range c.cfg.Concurrency {
		wg.Go(func() {
			for job := range jobs {
				part, err := c.putPart(pctx, key, uploadID, job)
				if job.done != nil {
					job.done()
				}
				if err != nil {
					fail(err)
					continue // drain, so the producer never blocks
				}
				mu.Lock()
				parts = append(parts, part)
				mu.Unlock()
			}
		})
	}
	total, perr := produce(pctx, jobs)
	close(jobs)
	wg.Wait()
	if perr != nil {
		fail(c.wrap("put", key, perr))
	}
	if firstErr != nil {
		c.abort(ctx, key, uploadID)
		return ObjectInfo{}, firstErr
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].PartNumber < parts[j].PartNumber })
	var completeOpts minio.PutObjectOptions
	if po.ifAbsent {
		completeOpts.SetMatchETagExcept("*")
	}
	var ui minio.UploadInfo
	tries := 0
	err := c.do(ctx, "complete upload", key, func(ctx context.Context) error {
		tries++
		var err error
		ui, err = c.core.CompleteMultipartUpload(ctx, c.bucket, key, uploadID, parts, completeOpts)
		if err != nil && tries > 1 && minio.ToErrorResponse(err).Code == "NoSuchUpload" {
			// An earlier try completed the upload but its reply was lost.
			oi, serr := c.core.StatObject(ctx, c.bucket, key, minio.StatObjectOptions{})
			if serr == nil && oi.Size == total && (sum.sha256 == "" || toInfo(oi).SHA256 == sum.sha256) {
				ui = minio.UploadInfo{ETag: oi.ETag, LastModified: oi.LastModified}
				return nil
			}
		}
		return err
	})
	if err != nil {
		c.abort(ctx, key, uploadID)
		return ObjectInfo{}, err
	}
	return c.putInfo(key, total, sum, ui, po), nil
}

func (c *Client) putPart(ctx context.Context, key, uploadID string, job partJob) (minio.CompletePart, error) {
	var part minio.ObjectPart
	err := c.do(ctx, fmt.Sprintf("put part %d", job.num), key, func(ctx context.Context) error {
		var err error
		part, err = c.core.PutObjectPart(ctx, c.bucket, key, uploadID, job.num, job.body(), job.size,
			minio.PutObjectPartOptions{
				DisableContentSha256: true, // the CRC32C below guards the transfer
				CustomHeader:         http.Header{"X-Amz-Checksum-Crc32c": []string{job.crc}},
			})
		return err
	})
	if err != nil {
		return minio.CompletePart{}, err
	}
	return minio.CompletePart{PartNumber: job.num, ETag: part.ETag, ChecksumCRC32C: part.ChecksumCRC32C}, nil
}

// abort drops a failed upload's parts. It runs even when ctx has ended, so
// a cancelled write does not leave parts behind.
func (c *Client) abort(ctx context.Context, key, uploadID string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := c.core.AbortMultipartUpload(actx, c.bucket, key, uploadID); err != nil {
		c.log.Warn("objstore: abort multipart upload", "bucket", c.bucket, "key", key, "err", err)
	}
}

// putStream writes from a reader that cannot be read twice. Up to one part
// is buffered first: a short stream becomes a single PUT like Put. A longer
// one is uploaded part by part while being hashed, and its sha256, known
// only at the end, is then stamped onto the object's metadata; until that
// last step the object reads as having no checksum.
func (c *Client) putStream(ctx context.Context, key string, r io.Reader, size int64, po putOptions) (ObjectInfo, error) {
	partSize := c.partLayout(size)
	first := make([]byte, partSize)
	if size >= 0 && size < partSize {
		first = first[:size]
	}
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if size >= 0 {
			return ObjectInfo{}, c.wrap("put", key, fmt.Errorf("reader ended after %d of %d bytes", n, size))
		}
		return c.Put(ctx, key, first[:n], c.replay(po)...)
	case err != nil:
		return ObjectInfo{}, c.wrap("put", key, err)
	case int64(n) == size:
		return c.Put(ctx, key, first, c.replay(po)...)
	}
	if size < 0 {
		// One more byte tells a stream of exactly one part from a longer one.
		var one [1]byte
		m, err := io.ReadFull(r, one[:])
		if errors.Is(err, io.EOF) {
			return c.Put(ctx, key, first, c.replay(po)...)
		}
		if err != nil {
			return ObjectInfo{}, c.wrap("put", key, err)
		}
		r = io.MultiReader(bytes.NewReader(one[:m]), r)
	}

	h, crc := sha256.New(), crc32.New(castagnoli)
	// Buffers in use are bounded: one being filled, one per worker.
	pool := make(chan []byte, c.cfg.Concurrency+1)
	for range c.cfg.Concurrency {
		pool <- make([]byte, partSize)
	}
	info, err := c.multipart(ctx, key, po, sums{}, func(ctx context.Context, jobs chan<- partJob) (int64, error) {
		var total int64
		for num := 1; ; num++ {
			buf := first // part 1 was read above
			var n int
			var err error
			if num == 1 {
				n = len(first)
			} else {
				select {
				case buf = <-pool:
				case <-ctx.Done():
					return total, ctx.Err()
				}
				n, err = io.ReadFull(r, buf[:partSize])
			}
			if n == 0 && (errors.Is(err, io.EOF)) {
				pool <- buf
				break
			}
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				pool <- buf
				return total, err
			}
			if num > maxParts {
				pool <- buf
				return total, fmt.Errorf("stream is longer than %d parts of %d bytes: raise --s3-part-size", maxParts, partSize)
			}
			part := buf[:n]
			h.Write(part)
			crc.Write(part)
			total += int64(n)
			job := partJob{
				num:  num,
				size: int64(n),
				crc:  crc32cBase64(crc32.Checksum(part, castagnoli)),
				body: func() io.Reader { return bytes.NewReader(part) },
				done: func() { pool <- buf },
			}
			select {
			case jobs <- job:
			case <-ctx.Done():
				return total, ctx.Err()
			}
			if err != nil { // short final part
				break
			}
		}
		if size >= 0 && total != size {
			return total, fmt.Errorf("reader ended after %d of %d bytes", total, size)
		}
		return total, nil
	})
	if err != nil {
		return ObjectInfo{}, err
	}
	sum := sums{sha256: hex.EncodeToString(h.Sum(nil)), crc32c: crc32cHex(crc.Sum32())}
	info.SHA256, info.CRC32C = sum.sha256, sum.crc32c
	if err := c.stamp(ctx, key, sum, po); err != nil {
		return ObjectInfo{}, err
	}
	return info, nil
}

// replay turns parsed put options back into options for a nested Put.
func (c *Client) replay(po putOptions) []PutOption {
	return []PutOption{func(o *putOptions) { *o = po }}
}

// stamp records the checksums in key's metadata with a copy onto itself, which MinIO
// does as a metadata-only update.
func (c *Client) stamp(ctx context.Context, key string, sum sums, po putOptions) error {
	return c.do(ctx, "put (record sha256)", key, func(ctx context.Context) error {
		_, err := c.core.Client.CopyObject(ctx,
			minio.CopyDestOptions{
				Bucket:          c.bucket,
				Object:          key,
				ReplaceMetadata: true,
				UserMetadata:    c.userMeta(po, sum),
				ContentType:     po.contentType,
			},
			minio.CopySrcOptions{Bucket: c.bucket, Object: key})
		return err
	})
}

func hashBytes(data []byte, partSize int64) (sum sums, crcs []string) {
	s := sha256.Sum256(data)
	var whole uint32
	if int64(len(data)) > partSize {
		for off := int64(0); off < int64(len(data)); off += partSize {
			end := min(off+partSize, int64(len(data)))
			part := data[off:end]
			crcs = append(crcs, crc32cBase64(crc32.Checksum(part, castagnoli)))
			whole = crc32.Update(whole, castagnoli, part)
		}
	} else {
		whole = crc32.Checksum(data, castagnoli)
	}
	return sums{sha256: hex.EncodeToString(s[:]), crc32c: crc32cHex(whole)}, crcs
}

// hashReaderAt reads size bytes of ra once, computing the sha256 and
// CRC-32C of all of it and, when it spans several parts, the CRC32C of each
// part.
func hashReaderAt(ctx context.Context, ra io.ReaderAt, size, partSize int64) (sums, []string, error) {
	h, whole := sha256.New(), crc32.New(castagnoli)
	buf := make([]byte, min(1<<20, max(size, 1)))
	var crcs []string
	for off := int64(0); off < size; off += partSize {
		end := min(off+partSize, size)
		crc := crc32.New(castagnoli)
		w := io.MultiWriter(h, crc, whole)
		n, err := io.CopyBuffer(w, io.NewSectionReader(ra, off, end-off), buf)
		if err != nil {
			return sums{}, nil, err
		}
		if n != end-off {
			return sums{}, nil, fmt.Errorf("reader ended after %d of %d bytes", off+n, size)
		}
		if err := ctx.Err(); err != nil {
			return sums{}, nil, err
		}
		if size > partSize {
			crcs = append(crcs, crc32cBase64(crc.Sum32()))
		}
	}
	return sums{sha256: hex.EncodeToString(h.Sum(nil)), crc32c: crc32cHex(whole.Sum32())}, crcs, nil
}

func crc32cHex(v uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return hex.EncodeToString(b[:])
}

func crc32cBase64(v uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return base64.StdEncoding.EncodeToString(b[:])
}

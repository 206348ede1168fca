package objstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// metaSHA256 is the user-metadata key (x-amz-meta-babelfish-sha256) that
// holds the hex sha256 of an object's whole content.
const metaSHA256 = "Babelfish-Sha256"

// metaCRC32C (x-amz-meta-babelfish-crc32c) holds the hex CRC-32C
// (Castagnoli) of the whole content, computed in the same pass as the
// sha256. Reads verify it: it runs at memory speed, where a sha256 of every
// byte read costs more CPU than the transfer itself.
const metaCRC32C = "Babelfish-Crc32c"

// Client reads and writes one bucket. It is safe for concurrent use.
type Client struct {
	core   minio.Core
	bucket string
	cfg    Config
	log    *slog.Logger
	// sha256Reads makes every read hash sha256 instead of CRC-32C.
	sha256Reads bool
	// sleep waits between retries; tests swap it to stay fast.
	sleep func(ctx context.Context, d time.Duration) error
}

// Option changes how New builds a Client.
type Option func(*options)

type options struct {
	log         *slog.Logger
	transport   http.RoundTripper
	sha256Reads bool
}

// WithLogger sets where retries and other notable events are logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithTransport replaces the HTTP transport (the CA file is then ignored).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithSHA256Reads makes every read verify the content's sha256 instead of
// its CRC-32C. Both are recorded at write time from the same bytes, and the
// sha256 recorded on an object is always compared with a manifest's before
// a part is read; this option adds a cryptographic hash of every byte read,
// which on a small machine is slower than the download it checks.
// Artifact.Verify always hashes sha256.
func WithSHA256Reads() Option { return func(o *options) { o.sha256Reads = true } }

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	SHA256       string // hex; empty in List results, which do not carry it
	CRC32C       string // hex CRC-32C (Castagnoli) of the content; empty like SHA256
	ETag         string
	ContentType  string
	LastModified time.Time
	// Metadata is the user metadata without the x-amz-meta- prefix and
	// without the checksum this package keeps.
	Metadata map[string]string
	// IsPrefix marks a "directory" in a non-recursive List.
	IsPrefix bool
}

// New checks cfg, reads the credentials file if one is named, and returns a
// client for cfg.Bucket. It does not contact the server; EnsureBucket does.
func New(ctx context.Context, cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withCredentials(ctx)
	if err != nil {
		return nil, err
	}
	o := options{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	rt := o.transport
	if rt == nil {
		tr, err := minio.DefaultTransport(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("objstore: transport: %w", err)
		}
		// Parts go up in parallel; keep a connection per part warm.
		tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, 4*cfg.Concurrency)
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("objstore: CA file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("objstore: CA file %s holds no PEM certificate", cfg.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		rt = tr
	}
	mc, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    cfg.TLS,
		Transport: rt,
		Region:    cfg.Region,
		// This package retries with its own bounded policy; minio-go's
		// built-in retries would multiply with it.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: client for %s: %w", cfg.Endpoint, err)
	}
	return &Client{
		core:        minio.Core{Client: mc},
		bucket:      cfg.Bucket,
		cfg:         cfg,
		log:         o.log,
		sha256Reads: o.sha256Reads,
		sleep:       sleepCtx,
	}, nil
}

// Bucket is the bucket this client works in.
func (c *Client) Bucket() string { return c.bucket }

// do runs fn until it succeeds, fails with a non-transient error, the retry
// budget is spent or ctx ends. Backoff doubles from RetryBaseDelay up to
// RetryMaxDelay; each wait is drawn from [d/2, d) so clients that failed
// together do not come back together.
func (c *Client) do(ctx context.Context, op, key string, fn func(ctx context.Context) error) error {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return c.wrap(op, key, fmt.Errorf("%w (last error: %v)", ctx.Err(), err))
		}
		if !transient(err) {
			return c.wrap(op, key, err)
		}
		if attempt >= c.cfg.MaxRetries {
			if attempt == 0 {
				return c.wrap(op, key, err)
			}
			return c.wrap(op, key, fmt.Errorf("gave up after %d attempts in %v: %w",
				attempt+1, time.Since(start).Round(time.Millisecond), err))
		}
		d := c.backoff(attempt)
		c.log.Warn("objstore: transient error, retrying", "op", op, "bucket", c.bucket, "key", key,
			"attempt", attempt+1, "max_retries", c.cfg.MaxRetries, "delay", d, "err", err)
		if serr := c.sleep(ctx, d); serr != nil {
			return c.wrap(op, key, fmt.Errorf("%w (last error: %v)", serr, err))
		}
	}
}

func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.RetryBaseDelay << min(attempt, 30)
	if d <= 0 || d > c.cfg.RetryMaxDelay {
		d = c.cfg.RetryMaxDelay
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// EnsureBucket creates the bucket unless it exists.
func (c *Client) EnsureBucket(ctx context.Context) error {
	return c.do(ctx, "ensure bucket", c.bucket, func(ctx context.Context) error {
		ok, err := c.core.BucketExists(ctx, c.bucket)
		if err != nil || ok {
			return err
		}
		err = c.core.MakeBucket(ctx, c.bucket, minio.MakeBucketOptions{Region: c.cfg.Region})
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil // someone else made it between our two calls
		}
		return err
	})
}

// Stat returns an object's size, sha256 and metadata without its content.
func (c *Client) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	var info ObjectInfo
	err := c.do(ctx, "stat", key, func(ctx context.Context) error {
		oi, err := c.core.StatObject(ctx, c.bucket, key, minio.StatObjectOptions{})
		info = toInfo(oi)
		return err
	})
	return info, err
}

// List returns the objects under prefix in key order. Without recursive it
// stops at the next "/" and returns those prefixes with IsPrefix set.
func (c *Client) List(ctx context.Context, prefix string, recursive bool) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := c.do(ctx, "list", prefix, func(ctx context.Context) error {
		out = out[:0]
		for oi := range c.core.ListObjectsIter(ctx, c.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive}) {
			if oi.Err != nil {
				return oi.Err
			}
			info := toInfo(oi)
			info.IsPrefix = !recursive && strings.HasSuffix(oi.Key, "/") && oi.ETag == ""
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// Delete removes an object; removing one that is not there is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	return c.do(ctx, "delete", key, func(ctx context.Context) error {
		return c.core.RemoveObject(ctx, c.bucket, key, minio.RemoveObjectOptions{})
	})
}

// DeletePrefix removes every object under prefix and returns how many it
// removed. An empty prefix is refused: it would empty the bucket.
func (c *Client) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" {
		return 0, errors.New("objstore: delete prefix: prefix is empty; refusing to delete the whole bucket")
	}
	objs, err := c.List(ctx, prefix, true)
	if err != nil {
		return 0, err
	}
	remaining := make(map[string]bool, len(objs))
	for _, o := range objs {
		remaining[o.Key] = true
	}
	err = c.do(ctx, "delete prefix", prefix, func(ctx context.Context) error {
		keys := make([]string, 0, len(remaining))
		for k := range remaining {
			keys = append(keys, k)
		}
		ch := make(chan minio.ObjectInfo)
		go func() {
			defer close(ch)
			for _, k := range keys {
				select {
				case ch <- minio.ObjectInfo{Key: k}:
				case <-ctx.Done():
					return
				}
			}
		}()
		var firstErr error
		for res := range c.core.RemoveObjectsWithResult(ctx, c.bucket, ch, minio.RemoveObjectsOptions{}) {
			if res.Err != nil {
				if firstErr == nil {
					firstErr = res.Err
				}
				continue
			}
			delete(remaining, res.ObjectName)
		}
		return firstErr
	})
	return len(objs) - len(remaining), err
}

// Copy copies src to dst on the server, with its recorded sha256.
func (c *Client) Copy(ctx context.Context, src, dst string) (ObjectInfo, error) {
	var info ObjectInfo
	err := c.do(ctx, "copy", src+" -> "+dst, func(ctx context.Context) error {
		ui, err := c.core.Client.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: c.bucket, Object: dst},
			minio.CopySrcOptions{Bucket: c.bucket, Object: src})
		if err != nil {
			return err
		}
		info = ObjectInfo{Key: dst, Size: ui.Size, ETag: ui.ETag, LastModified: ui.LastModified}
		return nil
	})
	if err != nil {
		return info, err
	}
	return c.Stat(ctx, dst)
}

func toInfo(oi minio.ObjectInfo) ObjectInfo {
	info := ObjectInfo{
		Key:          oi.Key,
		Size:         oi.Size,
		ETag:         oi.ETag,
		ContentType:  oi.ContentType,
		LastModified: oi.LastModified,
	}
	for k, v := range oi.UserMetadata {
		if strings.EqualFold(k, metaSHA256) {
			info.SHA256 = v
			continue
		}
		if strings.EqualFold(k, metaCRC32C) {
			info.CRC32C = v
			continue
		}
		if info.Metadata == nil {
			info.Metadata = make(map[string]string, len(oi.UserMetadata))
		}
		info.Metadata[k] = v
	}
	return info
}

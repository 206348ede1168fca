package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/minio/minio-go/v7"
)

// Errors callers test with errors.Is.
var (
	// ErrNotFound: the object (or artifact part) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNoBucket: the configured bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrChecksum: content does not match its recorded sha256; the error
	// is a *ChecksumError that names the key and both sums.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrIncomplete: an artifact has no manifest, so it was never
	// committed (or its writer crashed before committing).
	ErrIncomplete = errors.New("artifact incomplete: no manifest")
	// ErrExists: a write that must not replace an object found one there.
	ErrExists = errors.New("already exists")
)

// ChecksumError reports content whose checksum is not the one recorded for
// it. Expected is empty when the object carries no recorded sha256 at all.
type ChecksumError struct {
	Key       string
	Algorithm string // "sha256" (also when empty) or "crc32c"
	Expected  string // hex checksum recorded at write time (or in a manifest)
	Actual    string // hex checksum of the bytes read
}

func (e *ChecksumError) Error() string {
	if e.Expected == "" {
		return fmt.Sprintf("objstore: %s: no sha256 recorded for this object (not written by objstore, or its write did not finish)", e.Key)
	}
	alg := e.Algorithm
	if alg == "" {
		alg = "sha256"
	}
	return fmt.Sprintf("objstore: %s: %v: expected %s %s, got %s", e.Key, ErrChecksum, alg, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrChecksum) true.
func (e *ChecksumError) Is(target error) bool { return target == ErrChecksum }

// SizeError reports content whose length is not the one recorded for it.
type SizeError struct {
	Key      string
	Expected int64
	Actual   int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("objstore: %s: %v: expected %d bytes, got %d", e.Key, ErrChecksum, e.Expected, e.Actual)
}

// Is makes a size mismatch an ErrChecksum too: the content is not what was
// written.
func (e *SizeError) Is(target error) bool { return target == ErrChecksum }

// S3 error codes that mean "try again later" even when the status is not 5xx.
var transientCodes = map[string]bool{
	"SlowDown":                   true,
	"SlowDownRead":               true,
	"SlowDownWrite":              true,
	"RequestTimeout":             true,
	"RequestTimeTooSkewed":       false,
	"InternalError":              true,
	"ServiceUnavailable":         true,
	"OperationTimedOut":          true,
	"XMinioServerNotInitialized": true,
	"XMinioReadQuorum":           true,
	"XMinioWriteQuorum":          true,
}

// transient reports whether err is worth retrying: the network failed or the
// server said to come back later. Client errors (4xx) are final, and so is
// anything the caller's context ended.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		if retry, ok := transientCodes[resp.Code]; ok {
			return retry
		}
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests ||
			resp.StatusCode == http.StatusRequestTimeout
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// wrap turns a minio-go error into one of this package's: it names the
// operation and key and maps S3 codes onto the sentinels above.
func (c *Client) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch {
		case resp.Code == "NoSuchBucket":
			return fmt.Errorf("objstore: %s %s: bucket %q: %w", op, key, c.bucket, ErrNoBucket)
		case resp.Code == "NoSuchKey" || resp.Code == "NoSuchObject" || resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("objstore: %s %s: %w", op, key, ErrNotFound)
		case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
			return fmt.Errorf("objstore: %s %s: %w (%w)", op, key, ErrExists, err)
		}
	}
	var ce *ChecksumError
	var se *SizeError
	if errors.As(err, &ce) || errors.As(err, &se) {
		return err // already names the key
	}
	return fmt.Errorf("objstore: %s %s: %w", op, key, err)
}

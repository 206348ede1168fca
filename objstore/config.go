package objstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/spf13/pflag"
)

// Environment variables ConfigFromEnv reads. The access and secret keys come
// only from here or from a credentials file, never from flags, which other
// users of the machine can read in the process list.
const (
	EnvEndpoint        = "BABELFISH_S3_ENDPOINT"
	EnvBucket          = "BABELFISH_S3_BUCKET"
	EnvTLS             = "BABELFISH_S3_TLS"
	EnvCAFile          = "BABELFISH_S3_CA_FILE"
	EnvRegion          = "BABELFISH_S3_REGION"
	EnvAccessKey       = "BABELFISH_S3_ACCESS_KEY"
	EnvSecretKey       = "BABELFISH_S3_SECRET_KEY"
	EnvCredentialsFile = "BABELFISH_S3_CREDENTIALS_FILE"
	EnvPartSize        = "BABELFISH_S3_PART_SIZE"
	EnvConcurrency     = "BABELFISH_S3_CONCURRENCY"
	EnvMaxRetries      = "BABELFISH_S3_MAX_RETRIES"
)

// Limits Validate enforces. Part sizes are S3's own bounds.
const (
	MinPartSize       = 5 << 20
	MaxPartSize       = 5 << 30
	MaxConcurrency    = 64
	MaxRetriesLimit   = 30
	DefaultPartSize   = 16 << 20
	DefaultRegion     = "us-east-1"
	defaultRetries    = 6
	defaultRetryBase  = 100 * time.Millisecond
	defaultRetryMax   = 5 * time.Second
	defaultConcurrent = 4
)

// Config says where the object store is and how to talk to it. The zero
// value is not usable; start from DefaultConfig or ConfigFromEnv.
type Config struct {
	Endpoint string // host:port, no scheme
	Bucket   string
	TLS      bool
	CAFile   string // PEM bundle trusted besides the system roots; needs TLS
	Region   string

	AccessKey string
	SecretKey string `json:"-"` // never logged or marshalled
	// CredentialsFile holds the keys as "access_key = ..." and
	// "secret_key = ..." lines (AWS-style aws_access_key_id and
	// aws_secret_access_key also work); used when the keys are not set.
	CredentialsFile string

	PartSize    int64 // bytes per multipart part; larger objects are split
	Concurrency int   // parts in flight per object
	// MaxRetries is how many times a failed request is tried again;
	// 0 turns retries off.
	MaxRetries     int
	RetryBaseDelay time.Duration // first backoff, doubled each retry
	RetryMaxDelay  time.Duration // cap on one backoff
}

// DefaultConfig has every tuning knob at its default and no location.
func DefaultConfig() Config {
	return Config{
		Region:         DefaultRegion,
		PartSize:       DefaultPartSize,
		Concurrency:    defaultConcurrent,
		MaxRetries:     defaultRetries,
		RetryBaseDelay: defaultRetryBase,
		RetryMaxDelay:  defaultRetryMax,
	}
}

// ConfigFromEnv returns DefaultConfig overlaid with the BABELFISH_S3_*
// environment variables. It fails on a variable it cannot parse, naming it.
func ConfigFromEnv() (Config, error) {
	return configFromLookup(os.LookupEnv)
}

func configFromLookup(lookup func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	str := func(name string, dst *string) {
		if v, ok := lookup(name); ok {
			*dst = strings.TrimSpace(v)
		}
	}
	str(EnvEndpoint, &c.Endpoint)
	str(EnvBucket, &c.Bucket)
	str(EnvCAFile, &c.CAFile)
	str(EnvRegion, &c.Region)
	str(EnvAccessKey, &c.AccessKey)
	str(EnvSecretKey, &c.SecretKey)
	str(EnvCredentialsFile, &c.CredentialsFile)
	var errs []error
	if v, ok := lookup(EnvTLS); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("objstore: %s=%q is not a boolean", EnvTLS, v))
		}
		c.TLS = b
	}
	if v, ok := lookup(EnvPartSize); ok && v != "" {
		n, err := parseSize(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("objstore: %s: %w", EnvPartSize, err))
		}
		c.PartSize = n
	}
	ints := []struct {
		name string
		dst  *int
	}{{EnvConcurrency, &c.Concurrency}, {EnvMaxRetries, &c.MaxRetries}}
	for _, f := range ints {
		if v, ok := lookup(f.name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("objstore: %s=%q is not an integer", f.name, v))
			}
			*f.dst = n
		}
	}
	return c, errors.Join(errs...)
}

// RegisterFlags adds --s3-* flags to fs whose defaults are c's current
// values, so flags override the environment when c came from ConfigFromEnv.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Endpoint, "s3-endpoint", c.Endpoint, "object store address, host:port (env "+EnvEndpoint+")")
	fs.StringVar(&c.Bucket, "s3-bucket", c.Bucket, "bucket for datasets, checkpoints and models (env "+EnvBucket+")")
	fs.BoolVar(&c.TLS, "s3-tls", c.TLS, "talk HTTPS to the object store (env "+EnvTLS+")")
	fs.StringVar(&c.CAFile, "s3-ca-file", c.CAFile, "PEM file of extra CAs to trust with --s3-tls (env "+EnvCAFile+")")
	fs.StringVar(&c.Region, "s3-region", c.Region, "S3 region (env "+EnvRegion+")")
	fs.StringVar(&c.CredentialsFile, "s3-credentials-file", c.CredentialsFile,
		"file with access_key and secret_key lines, used when "+EnvAccessKey+"/"+EnvSecretKey+" are unset (env "+EnvCredentialsFile+")")
	fs.Var((*sizeFlag)(&c.PartSize), "s3-part-size", "multipart part size, e.g. 16MiB (env "+EnvPartSize+")")
	fs.IntVar(&c.Concurrency, "s3-concurrency", c.Concurrency, "parts uploaded at once per object (env "+EnvConcurrency+")")
	fs.IntVar(&c.MaxRetries, "s3-max-retries", c.MaxRetries, "retries of a request that failed transiently, 0 for none (env "+EnvMaxRetries+")")
	fs.DurationVar(&c.RetryBaseDelay, "s3-retry-base-delay", c.RetryBaseDelay, "first retry backoff, doubled on each retry")
	fs.DurationVar(&c.RetryMaxDelay, "s3-retry-max-delay", c.RetryMaxDelay, "longest single retry backoff")
}

// Validate reports every field that is missing or out of range, each named
// by its flag and environment variable, with the limit it broke.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("objstore: "+format, args...))
	}
	switch {
	case c.Endpoint == "":
		bad("endpoint is empty: set --s3-endpoint or %s (host:port)", EnvEndpoint)
	case strings.Contains(c.Endpoint, "://"):
		bad("endpoint %q has a scheme: give host:port and --s3-tls for HTTPS", c.Endpoint)
	case strings.ContainsAny(c.Endpoint, "/?#"):
		bad("endpoint %q has a path: give host:port only", c.Endpoint)
	}
	if c.Bucket == "" {
		bad("bucket is empty: set --s3-bucket or %s", EnvBucket)
	} else if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		bad("bucket %q is not a valid S3 bucket name: %v", c.Bucket, err)
	}
	if c.CAFile != "" && !c.TLS {
		bad("CA file %q given without TLS: set --s3-tls or %s=true", c.CAFile, EnvTLS)
	}
	if c.CredentialsFile == "" {
		if c.AccessKey == "" {
			bad("access key is empty: set %s or --s3-credentials-file", EnvAccessKey)
		}
		if c.SecretKey == "" {
			bad("secret key is empty: set %s or --s3-credentials-file", EnvSecretKey)
		}
	}
	if c.PartSize < MinPartSize || c.PartSize > MaxPartSize {
		bad("part size %d is outside [%d, %d] bytes (--s3-part-size, %s)", c.PartSize, MinPartSize, int64(MaxPartSize), EnvPartSize)
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		bad("concurrency %d is outside [1, %d] (--s3-concurrency, %s)", c.Concurrency, MaxConcurrency, EnvConcurrency)
	}
	if c.MaxRetries < 0 || c.MaxRetries > MaxRetriesLimit {
		bad("max retries %d is outside [0, %d] (--s3-max-retries, %s)", c.MaxRetries, MaxRetriesLimit, EnvMaxRetries)
	}
	if c.MaxRetries > 0 {
		if c.RetryBaseDelay <= 0 {
			bad("retry base delay %v must be > 0 (--s3-retry-base-delay)", c.RetryBaseDelay)
		}
		if c.RetryMaxDelay < c.RetryBaseDelay {
			bad("retry max delay %v is below the base delay %v (--s3-retry-max-delay)", c.RetryMaxDelay, c.RetryBaseDelay)
		}
	}
	return errors.Join(errs...)
}

// withCredentials returns c with the keys read from CredentialsFile when
// they are not set directly.
func (c Config) withCredentials(ctx context.Context) (Config, error) {
	if c.AccessKey != "" && c.SecretKey != "" || c.CredentialsFile == "" {
		return c, nil
	}
	if err := ctx.Err(); err != nil {
		return c, err
	}
	data, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		return c, fmt.Errorf("objstore: credentials file: %w", err)
	}
	access, secret := parseCredentials(data)
	if c.AccessKey == "" {
		c.AccessKey = access
	}
	if c.SecretKey == "" {
		c.SecretKey = secret
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return c, fmt.Errorf("objstore: credentials file %s: needs both access_key and secret_key lines", c.CredentialsFile)
	}
	return c, nil
}

// parseCredentials reads "key = value" lines; # and ; start comments and
// [section] headers are skipped, so a one-profile AWS credentials file works.
func parseCredentials(data []byte) (access, secret string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "access_key", "aws_access_key_id", strings.ToLower(EnvAccessKey):
			if access == "" {
				access = v
			}
		case "secret_key", "aws_secret_access_key", strings.ToLower(EnvSecretKey):
			if secret == "" {
				secret = v
			}
		}
	}
	return access, secret
}

const redacted = "[redacted]"

func redact(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// String prints the configuration with the secret key redacted.
func (c Config) String() string {
	return fmt.Sprintf("endpoint=%s bucket=%s tls=%t ca_file=%s region=%s access_key=%s secret_key=%s credentials_file=%s part_size=%d concurrency=%d max_retries=%d",
		c.Endpoint, c.Bucket, c.TLS, c.CAFile, c.Region, c.AccessKey, redact(c.SecretKey), c.CredentialsFile,
		c.PartSize, c.Concurrency, c.MaxRetries)
}

// GoString keeps %#v from printing the secret.
func (c Config) GoString() string { return "objstore.Config{" + c.String() + "}" }

// LogValue logs the configuration with the secret key redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("bucket", c.Bucket),
		slog.Bool("tls", c.TLS),
		slog.String("ca_file", c.CAFile),
		slog.String("region", c.Region),
		slog.String("access_key", c.AccessKey),
		slog.String("secret_key", redact(c.SecretKey)),
		slog.String("credentials_file", c.CredentialsFile),
		slog.Int64("part_size", c.PartSize),
		slog.Int("concurrency", c.Concurrency),
		slog.Int("max_retries", c.MaxRetries),
	)
}

// sizeFlag is a byte count flag that takes plain bytes or a KiB/MiB/GiB
// (or KB/MB/GB) suffix.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Type() string   { return "bytes" }
func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is not a byte count like 16777216 or 16MiB", v)
	}
	return n * mult, nil
}

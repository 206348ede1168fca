package objstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Endpoint = "minio.example:9000"
	c.Bucket = "babelfish"
	c.AccessKey, c.SecretKey = "access", "s3cr3t-value"
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"valid with credentials file", func(c *Config) { c.AccessKey, c.SecretKey, c.CredentialsFile = "", "", "/creds" }, nil},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, []string{"endpoint is empty", EnvEndpoint, "--s3-endpoint"}},
		{"endpoint with scheme", func(c *Config) { c.Endpoint = "https://minio:9000" }, []string{"has a scheme", "--s3-tls"}},
		{"endpoint with path", func(c *Config) { c.Endpoint = "minio:9000/bucket" }, []string{"has a path"}},
		{"no bucket", func(c *Config) { c.Bucket = "" }, []string{"bucket is empty", EnvBucket}},
		{"bad bucket", func(c *Config) { c.Bucket = "Bad_Bucket" }, []string{"not a valid S3 bucket name"}},
		{"no access key", func(c *Config) { c.AccessKey = "" }, []string{"access key is empty", EnvAccessKey}},
		{"no secret key", func(c *Config) { c.SecretKey = "" }, []string{"secret key is empty", EnvSecretKey}},
		{"CA without TLS", func(c *Config) { c.CAFile = "/ca.pem" }, []string{"without TLS"}},
		{"part size small", func(c *Config) { c.PartSize = 1 << 20 }, []string{"part size 1048576", "5242880"}},
		{"part size large", func(c *Config) { c.PartSize = 6 << 30 }, []string{"part size", "5368709120"}},
		{"concurrency zero", func(c *Config) { c.Concurrency = 0 }, []string{"concurrency 0", "[1, 64]"}},
		{"retries negative", func(c *Config) { c.MaxRetries = -1 }, []string{"max retries -1", "[0, 30]"}},
		{"retry delays inverted", func(c *Config) { c.RetryMaxDelay = time.Millisecond }, []string{"below the base delay"}},
		{"zero config", func(c *Config) { *c = Config{} }, []string{"endpoint is empty", "bucket is empty", "access key", "part size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatal("got valid, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestConfigFromEnvAndFlags(t *testing.T) {
	env := map[string]string{
		EnvEndpoint:    "env-host:9000",
		EnvBucket:      "env-bucket",
		EnvTLS:         "true",
		EnvAccessKey:   "env-access",
		EnvSecretKey:   "env-secret",
		EnvPartSize:    "32MiB",
		EnvConcurrency: "8",
		EnvMaxRetries:  "2",
	}
	c, err := configFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != "env-host:9000" || c.Bucket != "env-bucket" || !c.TLS || c.PartSize != 32<<20 ||
		c.Concurrency != 8 || c.MaxRetries != 2 || c.SecretKey != "env-secret" || c.Region != DefaultRegion {
		t.Fatalf("from env: %s", c)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--s3-bucket=flag-bucket", "--s3-part-size=8MiB", "--s3-tls=false"}); err != nil {
		t.Fatal(err)
	}
	if c.Bucket != "flag-bucket" || c.PartSize != 8<<20 || c.TLS || c.Endpoint != "env-host:9000" {
		t.Fatalf("flags over env: %s", c)
	}
	if fs.Lookup("s3-secret-key") != nil || fs.Lookup("s3-access-key") != nil {
		t.Fatal("keys must not be flags: the process list shows flags to every user")
	}

	bad := map[string]string{EnvTLS: "maybe", EnvPartSize: "lots", EnvConcurrency: "x"}
	_, err = configFromLookup(func(k string) (string, bool) { v, ok := bad[k]; return v, ok })
	for _, name := range []string{EnvTLS, EnvPartSize, EnvConcurrency} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("bad %s: error %v does not name it", name, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"5242880", 5 << 20, true}, {"16MiB", 16 << 20, true}, {"1 GiB", 1 << 30, true},
		{"10MB", 10e6, true}, {"512KiB", 512 << 10, true}, {"7B", 7, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"MiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body     string
		access, secret string
		ok             bool
	}{
		{"plain", "access_key = AK\nsecret_key = SK\n", "AK", "SK", true},
		{"aws profile", "[default]\naws_access_key_id=AK2\naws_secret_access_key = \"SK2\"\n# comment\n", "AK2", "SK2", true},
		{"env style", EnvAccessKey + "=AK3\n" + EnvSecretKey + "=SK3\n", "AK3", "SK3", true},
		{"no secret", "access_key = AK\n", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			c := validConfig()
			c.AccessKey, c.SecretKey, c.CredentialsFile = "", "", path
			got, err := c.withCredentials(context.Background())
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (got.AccessKey != tt.access || got.SecretKey != tt.secret) {
				t.Fatalf("got %q/%q", got.AccessKey, got.SecretKey)
			}
			if err != nil && strings.Contains(err.Error(), "SK") {
				t.Fatalf("error shows file content: %v", err)
			}
		})
	}
	// Keys from the environment win over the file.
	c := validConfig()
	c.CredentialsFile = filepath.Join(dir, "plain")
	if got, err := c.withCredentials(context.Background()); err != nil || got.SecretKey != "s3cr3t-value" {
		t.Fatalf("env keys with a file: %q, %v", got.SecretKey, err)
	}
}

// TestSecretRedacted prints and logs a config every way a caller might:
// the secret must never appear.
func TestSecretRedacted(t *testing.T) {
	c := validConfig()
	const secret = "s3cr3t-value"
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "s3", c)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "s3", &c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"String":     c.String(),
		"%v":         fmt.Sprintf("%v", c),
		"%+v":        fmt.Sprintf("%+v", c),
		"%#v":        fmt.Sprintf("%#v", c),
		"Sprint ptr": fmt.Sprint(&c),
		"nested":     fmt.Sprintf("%+v", struct{ S3 Config }{c}),
		"slog":       logged.String(),
		"json":       string(js),
	}
	for how, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s shows the secret: %s", how, out)
		}
		if !strings.Contains(out, "access") {
			t.Errorf("%s lost the rest of the config: %s", how, out)
		}
	}
	if !strings.Contains(c.String(), redacted) {
		t.Errorf("String does not mark the secret as redacted: %s", c.String())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := validConfig()
	c.Bucket = ""
	if _, err := New(context.Background(), c); err == nil || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("got %v", err)
	}
	c = validConfig()
	c.TLS, c.CAFile = true, filepath.Join(t.TempDir(), "missing.pem")
	if _, err := New(context.Background(), c); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Fatalf("missing CA file: got %v", err)
	}
}

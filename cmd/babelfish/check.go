package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// checkOptions are the flags every check shares: how long to retry and how
// to speak TLS.
type checkOptions struct {
	timeout        time.Duration
	interval       time.Duration
	attemptTimeout time.Duration
	caFile         string
	insecureTLS    bool
	serverName     string
}

// maxCheckBody is how much of an HTTP answer is read and searched.
const maxCheckBody = 1 << 20

// newCheckCmd is `babelfish check`: probes for `helm test` pods and scripts,
// since the image has no curl or grpcurl.
func newCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Probe an HTTP endpoint or a gRPC health service until it answers as expected",
		Long: `Probe one endpoint, retrying every --interval until it answers as expected or
--timeout passes, then exit 0 (printing what answered) or 1 (naming what was
probed, how often, and the last failure). The chart's ` + "`helm test`" + ` pods run
these checks, as the image has no curl or grpcurl.`,
	}
	cmd.AddCommand(newCheckHTTPCmd(), newCheckGRPCHealthCmd())
	return cmd
}

func addCheckFlags(cmd *cobra.Command) *checkOptions {
	o := &checkOptions{}
	f := cmd.Flags()
	f.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long (0: one attempt only)")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "wait between two attempts")
	f.DurationVar(&o.attemptTimeout, "attempt-timeout", 5*time.Second, "limit of each attempt")
	f.StringVar(&o.caFile, "ca-file", "", "PEM CA bundle to verify the server with (default: the system roots)")
	f.BoolVar(&o.insecureTLS, "insecure-skip-verify", false, "accept any server certificate (TLS still encrypts)")
	f.StringVar(&o.serverName, "server-name", "", "name to verify the server certificate against (default: the host of the address)")
	return o
}

func (o *checkOptions) validate() error {
	switch {
	case o.timeout < 0:
		return fmt.Errorf("--timeout %v: must be >= 0", o.timeout)
	case o.interval <= 0:
		return fmt.Errorf("--interval %v: must be > 0", o.interval)
	case o.attemptTimeout <= 0:
		return fmt.Errorf("--attempt-timeout %v: must be > 0", o.attemptTimeout)
	case o.caFile != "" && o.insecureTLS:
		return errors.New("--ca-file and --insecure-skip-verify exclude each other")
	}
	return nil
}

// tlsConfig is the client TLS configuration the flags ask for.
func (o *checkOptions) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.serverName, InsecureSkipVerify: o.insecureTLS}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", o.caFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// retry runs attempt until it succeeds or o.timeout passes, and returns the
// success message or an error naming what was probed and the last failure.
func (o *checkOptions) retry(ctx context.Context, what string, attempt func(ctx context.Context) (string, error)) (string, error) {
	start := time.Now()
	deadline := start.Add(o.timeout)
	log := slog.Default().With("check", what)
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, o.attemptTimeout)
		msg, err := attempt(actx)
		cancel()
		if err == nil {
			return fmt.Sprintf("ok: %s: %s (attempt %d, after %v)", what, msg, n, time.Since(start).Round(time.Millisecond)), nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("%s: interrupted after %s: %w (last failure: %v)", what, attempts(n), ctx.Err(), err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return "", fmt.Errorf("%s: failed %s in %v; last: %w", what, attempts(n), time.Since(start).Round(time.Millisecond), err)
		}
		log.Info("not yet", "attempt", n, "err", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: interrupted after %s: %w (last failure: %v)", what, attempts(n), ctx.Err(), err)
		case <-time.After(min(o.interval, left)):
		}
	}
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

func newCheckHTTPCmd() *cobra.Command {
	var (
		wantStatus int
		wantBody   []string
	)
	cmd := &cobra.Command{
		Use:   "http URL",
		Short: "GET a URL until it answers with the expected status and body",
		Long: `GET URL until the answer has status --expect-status and its body (the first
MiB) holds every --expect-body substring, or --timeout passes. Redirects are
followed; https URLs verify the server against the system roots or --ca-file.`,
		Example: `  # the scheduler is up
  babelfish check http http://babelfish-scheduler-metrics:8080/healthz --expect-body ok

  # the dashboard page, within two minutes
  babelfish check http http://babelfish-scheduler-metrics:8081/ \
    --expect-body '<title>Babelfish</title>' --timeout 2m

  # a 404 is what is expected
  babelfish check http http://localhost:9400/nothing --expect-status 404`,
		Args: cobra.ExactArgs(1),
	}
	o := addCheckFlags(cmd)
	cmd.Flags().IntVar(&wantStatus, "expect-status", http.StatusOK, "HTTP status the answer must have")
	cmd.Flags().StringArrayVar(&wantBody, "expect-body", nil, "substring the body must hold (repeatable: all of them)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := o.validate(); err != nil {
			return err
		}
		if wantStatus < 100 || wantStatus > 599 {
			return fmt.Errorf("--expect-status %d: not an HTTP status", wantStatus)
		}
		url := args[0]
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return fmt.Errorf("URL %q: want an http:// or https:// URL", url)
		}
		tc, err := o.tlsConfig()
		if err != nil {
			return err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		tr.DisableKeepAlives = true
		client := &http.Client{Transport: tr}
		msg, err := o.retry(cmd.Context(), "GET "+url, func(ctx context.Context) (string, error) {
			return checkHTTP(ctx, client, url, wantStatus, wantBody)
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
		return err
	}
	return cmd
}

// checkHTTP makes one GET and says what is wrong with the answer, if
// anything.
func checkHTTP(ctx context.Context, client *http.Client, url string, wantStatus int, wantBody []string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	if err != nil {
		return "", fmt.Errorf("status %s, reading the body: %w", resp.Status, err)
	}
	if resp.StatusCode != wantStatus {
		return "", fmt.Errorf("status %s, want %d; body: %s", resp.Status, wantStatus, excerpt(body))
	}
	var missing []string
	for _, w := range wantBody {
		if !strings.Contains(string(body), w) {
			missing = append(missing, fmt.Sprintf("%q", w))
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("status %s but the body lacks %s; body: %s", resp.Status, strings.Join(missing, ", "), excerpt(body))
	}
	return fmt.Sprintf("%s, %d bytes", resp.Status, len(body)), nil
}

// excerpt is the start of a body, quoted, for an error message.
func excerpt(b []byte) string {
	const n = 200
	if len(b) > n {
		return fmt.Sprintf("%q... (%d bytes)", b[:n], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func newCheckGRPCHealthCmd() *cobra.Command {
	var (
		service   string
		useTLS    bool
		wantState string
	)
	cmd := &cobra.Command{
		Use:   "grpc-health HOST:PORT",
		Short: "Call grpc.health.v1.Health/Check until the service reports SERVING",
		Long: `Call grpc.health.v1.Health/Check for --service ("" is the whole server) until
it reports --expect (SERVING by default), or --timeout passes. Plaintext
unless --tls (or --ca-file, --insecure-skip-verify, --server-name) is given.
Babelfish serving reports SERVING once its first model release is warm.`,
		Example: `  # the serving tier of the chart (plaintext gRPC behind its Service)
  babelfish check grpc-health babelfish-serving:443 --service babelfish.v1.Translator

  # over TLS, verified against a private CA
  babelfish check grpc-health translate.example.com:443 --ca-file ca.crt`,
		Args: cobra.ExactArgs(1),
	}
	o := addCheckFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&service, "service", "", `service to ask about; "" asks about the server as a whole`)
	f.BoolVar(&useTLS, "tls", false, "connect with TLS (implied by --ca-file, --insecure-skip-verify and --server-name)")
	f.StringVar(&wantState, "expect", healthpb.HealthCheckResponse_SERVING.String(), "status the service must report: SERVING, NOT_SERVING or SERVICE_UNKNOWN")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := o.validate(); err != nil {
			return err
		}
		want, ok := healthpb.HealthCheckResponse_ServingStatus_value[wantState]
		if !ok || want == int32(healthpb.HealthCheckResponse_UNKNOWN) {
			return fmt.Errorf("--expect %q: want SERVING, NOT_SERVING or SERVICE_UNKNOWN", wantState)
		}
		addr := args[0]
		creds := insecure.NewCredentials()
		if useTLS || o.caFile != "" || o.insecureTLS || o.serverName != "" {
			tc, err := o.tlsConfig()
			if err != nil {
				return err
			}
			creds = credentials.NewTLS(tc)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return fmt.Errorf("grpc-health %s: %w", addr, err)
		}
		defer conn.Close()
		client := healthpb.NewHealthClient(conn)
		what := fmt.Sprintf("grpc health of %s, service %q", addr, service)
		msg, err := o.retry(cmd.Context(), what, func(ctx context.Context) (string, error) {
			return checkGRPCHealth(ctx, client, service, healthpb.HealthCheckResponse_ServingStatus(want))
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
		return err
	}
	return cmd
}

// checkGRPCHealth makes one Health/Check call and says what is wrong with
// the answer, if anything.
func checkGRPCHealth(ctx context.Context, client healthpb.HealthClient, service string, want healthpb.HealthCheckResponse_ServingStatus) (string, error) {
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	got := resp.GetStatus()
	if status.Code(err) == codes.NotFound {
		// The standard health server's answer for a service it does not know.
		got, err = healthpb.HealthCheckResponse_SERVICE_UNKNOWN, nil
	}
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("status %s, want %s", got, want)
	}
	return got.String(), nil
}

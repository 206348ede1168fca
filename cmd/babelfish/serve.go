package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/serving"
	"babelfish.dev/babelfish/serving/batcher"
)

type serveOptions struct {
	model         string
	vocoder       string
	listen        string
	metricsListen string
	release       int64
	poll          time.Duration
	batching      batcher.Config
	limits        serving.Limits
	tlsCert       string
	tlsKey        string
	tlsClientCA   string
	tokenFile     string
	drain         time.Duration
}

// newServeCmd is `babelfish serve`: the Translator gRPC server.
func newServeCmd() *cobra.Command {
	o := serveOptions{batching: serving.DefaultBatching(), limits: serving.DefaultLimits()}
	cmd := &cobra.Command{
		Use:     "serve --model NAME [--listen :8443]",
		Short:   "Serve the Translator gRPC API from the current model release",
		GroupID: "serve",
		Long: `Serve babelfish.v1.Translator (Translate, StreamTranslate, ListLanguages), with
gRPC health and reflection, from a model's releases in object storage.

The server follows models/<model>/current (or serves --release N only): it loads
a new release in the background, verifies its checksums, warms it up, swaps it
in and drains the old one, so a promotion drops no request. Health reports
SERVING once the first release is warm. Every answer names its release.

Requests are batched dynamically (--max-batch, --max-delay), and --instances
batches run at once, so one fills while another computes; at most
--max-queue wait, and beyond that the server answers RESOURCE_EXHAUSTED with a
retry delay at once. Requests over a limit (--max-audio-seconds,
--max-audio-bytes, sample rates, languages) get INVALID_ARGUMENT naming it.

--vocoder loops renders every release's speech from per-unit loops built in
warm-up: about a tenth of Griffin-Lim's CPU per request, for a few tenths
of a dB of MCD (bench/RESULTS.md); by default each release uses its own.

--metrics-listen serves Prometheus /metrics (queue and compute time, batch
sizes, successes and failures per release) and /healthz. TLS with --tls-cert
and --tls-key; --tls-client-ca requires client certificates (mutual TLS);
--auth-token-file requires "authorization: Bearer <token>" (one token a line).`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	store := addStoreFlags(cmd)
	f.StringVar(&o.model, "model", "", "model name in object storage (models/<model>/)")
	f.StringVar(&o.listen, "listen", ":8443", "gRPC address")
	f.StringVar(&o.metricsListen, "metrics-listen", ":9464", "address for /metrics and /healthz; empty turns it off")
	f.Int64Var(&o.release, "release", 0, "serve this release number only, ignoring current")
	f.DurationVar(&o.poll, "poll", 2*time.Second, "how often current is read")
	f.IntVar(&o.batching.MaxBatch, "max-batch", o.batching.MaxBatch, "most requests in one batch; 1 turns batching off")
	f.DurationVar(&o.batching.MaxDelay, "max-delay", o.batching.MaxDelay, "longest a request waits for its batch to fill; 0 runs whatever is queued as soon as an executor is free (lower latency at low load for light models such as loops, a longer p99 under heavy load; see bench/RESULTS.md)")
	f.IntVar(&o.batching.EagerBelow, "eager-below", o.batching.EagerBelow, "run a partial batch at once, without waiting --max-delay, while fewer inputs than this are running (default: the CPU cores; 0 always waits)")
	f.IntVar(&o.batching.MaxQueue, "max-queue", o.batching.MaxQueue, "requests that may wait; more are rejected with RESOURCE_EXHAUSTED")
	f.IntVar(&o.batching.Instances, "instances", o.batching.Instances, "batches run at once")
	f.Float64Var(&o.limits.MaxSeconds, "max-audio-seconds", o.limits.MaxSeconds, "longest input audio")
	f.Int64Var(&o.limits.MaxBytes, "max-audio-bytes", o.limits.MaxBytes, "largest input WAV (and stream chunk)")
	f.IntVar(&o.limits.MinRate, "min-sample-rate", o.limits.MinRate, "lowest input sample rate (Hz)")
	f.IntVar(&o.limits.MaxRate, "max-sample-rate", o.limits.MaxRate, "highest input sample rate (Hz)")
	f.Float64Var(&o.limits.MaxOutputSeconds, "max-output-seconds", o.limits.MaxOutputSeconds, "longest output speech")
	f.Float64Var(&o.limits.MaxStreamSeconds, "max-stream-seconds", o.limits.MaxStreamSeconds, "most audio one StreamTranslate call may send")
	f.DurationVar(&o.limits.StreamIdleTimeout, "stream-idle-timeout", o.limits.StreamIdleTimeout, "end a stream that sends nothing this long")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for TLS")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM key for TLS")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "PEM CA bundle; clients must present a certificate it signed (mutual TLS)")
	f.StringVar(&o.tokenFile, "auth-token-file", "", "file of accepted bearer tokens, one a line")
	f.StringVar(&o.vocoder, "vocoder", "", "vocoder for every release: griffin-lim, or loops (about 10x less CPU a request, a few tenths of a dB MCD worse); default: each release's own")
	f.DurationVar(&o.drain, "drain-timeout", time.Minute, "how long in-flight work may take at shutdown or after a swap")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if o.model == "" {
			return errors.New("--model is required")
		}
		st, err := store.open(cmd.Context())
		if err != nil {
			return err
		}
		opts := []serving.Option{serving.WithLogger(slog.Default()), serving.WithBatching(o.batching), serving.WithLimits(o.limits),
			serving.WithPollInterval(o.poll), serving.WithDrainTimeout(o.drain), serving.WithVocoder(o.vocoder)}
		if o.release > 0 {
			opts = append(opts, serving.WithRelease(o.release))
		}
		if (o.tlsCert == "") != (o.tlsKey == "") {
			return errors.New("--tls-cert and --tls-key go together")
		}
		if o.tlsClientCA != "" && o.tlsCert == "" {
			return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		if o.tlsCert != "" {
			c, err := serving.LoadTLS(o.tlsCert, o.tlsKey, o.tlsClientCA)
			if err != nil {
				return err
			}
			opts = append(opts, serving.WithTLS(c))
		}
		if o.tokenFile != "" {
			toks, err := readTokens(o.tokenFile)
			if err != nil {
				return err
			}
			opts = append(opts, serving.WithAuthTokens(toks...))
		}
		s, err := serving.New(st, o.model, opts...)
		if err != nil {
			return err
		}
		return runServe(cmd.Context(), s, o.listen, o.metricsListen)
	}
	return cmd
}

func readTokens(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--auth-token-file: %w", err)
	}
	defer f.Close()
	var toks []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			toks = append(toks, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--auth-token-file: %w", err)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("--auth-token-file %s holds no token", path)
	}
	return toks, nil
}

func runServe(ctx context.Context, s *serving.Server, listen, metricsListen string) error {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			select {
			case <-s.Ready():
				fmt.Fprintln(w, "serving", s.Release())
			default:
				http.Error(w, "no release warm yet", http.StatusServiceUnavailable)
			}
		})
		ml, err := net.Listen("tcp", metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ml) }()
		defer hs.Close()
		slog.Info("metrics", "addr", ml.Addr().String())
	}
	return s.Serve(ctx, lis)
}

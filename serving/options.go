package serving

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"time"

	"babelfish.dev/babelfish/serving/batcher"
	"babelfish.dev/babelfish/serving/vad"
)

// Limits bound what a request may ask. Every field is enforced and a
// request over one is answered INVALID_ARGUMENT naming the field.
type Limits struct {
	// MaxBytes bounds a request's WAV file (and one stream chunk).
	MaxBytes int64
	// MinSeconds and MaxSeconds bound a Translate input's duration.
	MinSeconds, MaxSeconds float64
	// MinRate and MaxRate bound input sample rates, in Hz.
	MinRate, MaxRate int
	// MaxChannels bounds a WAV's channel count before downmixing.
	MaxChannels int
	// MaxOutputSeconds bounds the speech a request gets back; a request's
	// max_output_seconds may only lower it.
	MaxOutputSeconds float64
	// MaxBeam bounds decode.beam_size.
	MaxBeam int
	// MaxStreamSeconds bounds the audio one StreamTranslate call may send.
	MaxStreamSeconds float64
	// StreamIdleTimeout ends a stream that sends nothing for this long.
	StreamIdleTimeout time.Duration
}

// DefaultLimits are fit for interactive translation.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:          16 << 20,
		MinSeconds:        0.05,
		MaxSeconds:        60,
		MinRate:           8000,
		MaxRate:           48000,
		MaxChannels:       8,
		MaxOutputSeconds:  30,
		MaxBeam:           8,
		MaxStreamSeconds:  600,
		StreamIdleTimeout: 10 * time.Second,
	}
}

// Validate checks the limits themselves.
func (l Limits) Validate() error {
	switch {
	case l.MaxBytes < 64 || l.MaxBytes > 1<<30:
		return fmt.Errorf("serving: Limits.MaxBytes %d: want 64..%d", l.MaxBytes, 1<<30)
	case !(l.MinSeconds >= 0) || !(l.MaxSeconds > l.MinSeconds) || math.IsInf(l.MaxSeconds, 0):
		return fmt.Errorf("serving: Limits.MinSeconds %g, MaxSeconds %g: want 0 <= MinSeconds < MaxSeconds, finite", l.MinSeconds, l.MaxSeconds)
	case l.MinRate < 1 || l.MaxRate < l.MinRate || l.MaxRate > 384000:
		return fmt.Errorf("serving: Limits.MinRate %d, MaxRate %d: want 1 <= MinRate <= MaxRate <= 384000", l.MinRate, l.MaxRate)
	case l.MaxChannels < 1:
		return fmt.Errorf("serving: Limits.MaxChannels %d: want >= 1", l.MaxChannels)
	case !(l.MaxOutputSeconds > 0) || math.IsInf(l.MaxOutputSeconds, 0):
		return fmt.Errorf("serving: Limits.MaxOutputSeconds %g: want > 0, finite", l.MaxOutputSeconds)
	case l.MaxBeam < 1 || l.MaxBeam > 64:
		return fmt.Errorf("serving: Limits.MaxBeam %d: want 1..64", l.MaxBeam)
	case !(l.MaxStreamSeconds > 0) || math.IsInf(l.MaxStreamSeconds, 0):
		return fmt.Errorf("serving: Limits.MaxStreamSeconds %g: want > 0, finite", l.MaxStreamSeconds)
	case l.StreamIdleTimeout <= 0:
		return fmt.Errorf("serving: Limits.StreamIdleTimeout %v: want > 0", l.StreamIdleTimeout)
	}
	return nil
}

// DefaultBatching is the dynamic batcher's default: batches of up to 8, a
// 2 ms window to fill them, 256 queued requests, two executors. The model
// spreads one batch over the CPU cores itself; the second executor fills
// its batch while the first computes, so the cores do not idle between
// batches (bench/serving: at 16 clients on 2 cores, 8 x 2 answered about a
// quarter more requests than 16 x 1, at a lower p99).
//
// While fewer inputs than there are cores are running, a request does not
// wait for its batch to fill (EagerBelow): on a CPU a batch saves a few
// per cent of the work at most, and an idle core saves nothing. On
// bench/serving that took loops at one client from 271 to 731 answers/s
// (p50 4 ms to 1) and Griffin-Lim from 49 to 57, with c=16 throughput
// unchanged; the window still fills batches once the cores are busy.
func DefaultBatching() batcher.Config {
	return batcher.Config{MaxBatch: 8, MaxDelay: 2 * time.Millisecond, MaxQueue: 256, Instances: 2, EagerBelow: runtime.GOMAXPROCS(0)}
}

type options struct {
	log          *slog.Logger
	limits       Limits
	batching     batcher.Config
	poll         time.Duration
	pin          int64
	tls          *tls.Config
	tokens       []string
	drainTimeout time.Duration
	vad          vad.Config
	vocoder      string
}

// Option changes a Server.
type Option func(*options)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option { return func(o *options) { o.limits = l } }

// WithBatching replaces DefaultBatching; MaxBatch 1 turns batching off.
func WithBatching(c batcher.Config) Option { return func(o *options) { o.batching = c } }

// WithPollInterval sets how often current is read (default 2s).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithRelease serves release n and ignores current (a TranslationModel
// with spec.release set).
func WithRelease(n int64) Option { return func(o *options) { o.pin = n } }

// WithTLS serves over TLS; a config with ClientAuth set and ClientCAs
// requires client certificates (mutual TLS). See LoadTLS.
func WithTLS(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithAuthTokens requires "authorization: Bearer <token>" with one of
// tokens on every Translator call (health stays open for probes).
func WithAuthTokens(tokens ...string) Option {
	return func(o *options) { o.tokens = append([]string(nil), tokens...) }
}

// WithDrainTimeout bounds how long an old release may take to finish its
// queued work after a swap, and a shutdown its in-flight calls (default 60s).
func WithDrainTimeout(d time.Duration) Option { return func(o *options) { o.drainTimeout = d } }

// WithVocoder renders every release's output with this vocoder (a
// model.Config.Vocoder value: model.VocoderGriffinLim or model.VocoderLoops)
// instead of the one the release was trained with. Loops cost about a
// tenth of Griffin-Lim per request; their one-off rendering happens in
// warm-up, before a release takes traffic.
func WithVocoder(kind string) Option { return func(o *options) { o.vocoder = kind } }

// WithVAD tunes StreamTranslate's segmentation (Rate is set per stream).
func WithVAD(c vad.Config) Option { return func(o *options) { o.vad = c } }

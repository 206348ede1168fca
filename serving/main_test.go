package serving

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/internal/fixture"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/objstore"
)

// shared is the MinIO every test uses (each on its own bucket); TestMain
// starts it and fails the run, never skips, when it cannot.
var shared *testenv.MinIO

func TestMain(m *testing.M) {
	testenv.RunWithMinIO(m, "serving", func(mi *testenv.MinIO) { shared = mi })
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStore(t testing.TB) *objstore.Client { return fixture.Store(t, shared) }

var testLangs = []string{"de", "en", "fr"}

// tinyModel is a randomly initialised model (serving mechanics do not need
// a trained one); seed changes its weights, glIters its vocoder effort.
func tinyModel(t testing.TB, seed uint64, glIters int) *model.Model {
	return fixture.TinyModel(t, testLangs, seed, glIters)
}

// promote commits m as a checkpoint of job at step and promotes it.
func promote(t testing.TB, st *objstore.Client, name string, m *model.Model, step int64) registry.Release {
	t.Helper()
	ctx := context.Background()
	ck := fixture.WriteCheckpoint(t, st, "job", step, m, map[string]any{"eval": map[string]float64{"concept_accuracy": float64(step) / 100}})
	reg, err := registry.New(st, name, registry.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := reg.Promote(ctx, ck)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// testServer is a Server serving on loopback, with a client.
type testServer struct {
	*Server
	addr   string
	conn   *grpc.ClientConn
	client babelfishv1.TranslatorClient
	stop   func()
}

func startServer(t testing.TB, st *objstore.Client, name string, wait bool, opts ...Option) *testServer {
	t.Helper()
	opts = append([]Option{WithLogger(quiet()), WithPollInterval(30 * time.Millisecond), WithLimits(testLimits())}, opts...)
	s, err := New(st, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	ts := &testServer{Server: s, addr: lis.Addr().String()}
	ts.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(func() {
		if ts.conn != nil {
			_ = ts.conn.Close()
		}
		if ts.stop != nil {
			ts.stop()
		}
	})
	if wait {
		select {
		case <-s.Ready():
		case <-time.After(60 * time.Second):
			t.Fatal("server not ready after 60s")
		}
	}
	ts.conn, err = grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ts.client = babelfishv1.NewTranslatorClient(ts.conn)
	return ts
}

// speech is a voiced, speech-like test clip: a few harmonic tones with
// pauses, seconds long at rate.
func speech(rate int, seconds float64, seed uint64) audio.Clip {
	rng := rand.New(rand.NewPCG(seed, 9))
	n := int(seconds * float64(rate))
	x := make([]float32, n)
	f := 120 + 100*rng.Float64()
	for i := range x {
		t := float64(i) / float64(rate)
		env := math.Max(0, math.Sin(2*math.Pi*1.5*t))
		x[i] = float32(0.3 * env * (math.Sin(2*math.Pi*f*t) + 0.5*math.Sin(4*math.Pi*f*t) + 0.2*math.Sin(6*math.Pi*f*t)) / 1.7)
	}
	return audio.Clip{Rate: rate, Samples: x}
}

func wavOf(t testing.TB, c audio.Clip) []byte {
	t.Helper()
	b, err := audio.EncodeWAV(c, audio.PCM16)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// testLimits keep outputs short: the vocoder's cost grows with output
// length, and the tests are about serving, not speech.
func testLimits() Limits {
	l := DefaultLimits()
	l.MaxOutputSeconds = 0.25
	return l
}

package serving

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
)

func TestTranslateListLanguagesHealthReflection(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	rel := promote(t, st, "s2ut", tinyModel(t, 3, 2), 10)
	ts := startServer(t, st, "s2ut", true)

	hc := healthpb.NewHealthClient(ts.conn)
	for _, svc := range []string{"", ServiceName} {
		h, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v, %v", svc, h, err)
		}
	}

	in := speech(22050, 0.6, 1)
	resp, err := ts.client.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wavOf(t, in)}, TargetLanguage: "fr"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelVersion != "s2ut/releases/1" || resp.ModelVersion != rel.Name() {
		t.Fatalf("model_version %q, want %q", resp.ModelVersion, rel.Name())
	}
	out, err := audio.DecodeWAV(resp.Audio.Wav, audio.Limits{})
	if err != nil || out.Rate != int(resp.OutputSampleRate) || out.Rate != 16000 || len(out.Samples) == 0 {
		t.Fatalf("output audio: %d samples at %d Hz (%d said), %v", len(out.Samples), out.Rate, resp.OutputSampleRate, err)
	}
	if resp.Timing.GetBatchSize() != 1 || resp.Timing.GetComputeSeconds() <= 0 {
		t.Fatalf("timing %+v", resp.Timing)
	}
	// The answer is the release's model's answer for the same input.
	want := expected(t, tinyModel(t, 3, 2), wavOf(t, in), "fr")
	if !bytes.Equal(resp.Audio.Wav, want) {
		t.Fatal("served audio differs from the model's own translation")
	}

	ll, err := ts.client.ListLanguages(ctx, &babelfishv1.ListLanguagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range ll.Languages {
		if !l.Target || !l.Source {
			t.Errorf("language %v not both target and source", l)
		}
		names = append(names, l.Code+"="+l.Name)
	}
	if got := strings.Join(names, ","); got != "de=German,en=English,fr=French" || ll.ModelVersion != rel.Name() {
		t.Fatalf("ListLanguages = %s (%s)", got, ll.ModelVersion)
	}

	// Reflection lists the services.
	rc, err := rpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var svcs []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		svcs = append(svcs, s.Name)
	}
	if !contains(strings.Join(svcs, " "), ServiceName, "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v", svcs)
	}

	// Metrics carry the Triton breakdown per release.
	rec := httptest.NewRecorder()
	ts.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, series := range []string{
		`babelfish_serving_request_success_total{method="Translate",release="s2ut/releases/1"} 1`,
		`babelfish_serving_exec_count_total{release="s2ut/releases/1"} 1`,
		`babelfish_serving_inference_count_total{release="s2ut/releases/1"} 1`,
		`babelfish_serving_queue_duration_seconds_count{release="s2ut/releases/1"} 1`,
		`babelfish_serving_compute_duration_seconds_count{release="s2ut/releases/1"} 1`,
		`babelfish_serving_batch_size_count{release="s2ut/releases/1"} 1`,
		`babelfish_serving_release_info{release="s2ut/releases/1"} 1`,
		`babelfish_serving_queue_depth 0`,
	} {
		if !strings.Contains(string(body), series) {
			t.Errorf("metrics lack %s", series)
		}
	}
}

// expected is what model m answers for wav into lang, encoded as served.
func expected(t testing.TB, m *model.Model, wav []byte, lang string) []byte {
	t.Helper()
	return expectedWith(t, m, wav, lang, "")
}

// expectedWith is expected through the named vocoder.
func expectedWith(t testing.TB, m *model.Model, wav []byte, lang, vocoder string) []byte {
	t.Helper()
	clip, err := audio.DecodeWAV(wav, audio.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := m.Translate(context.Background(), []model.Input{{Audio: clip, TargetLang: lang}}, model.DecodeOptions{MaxSeconds: testLimits().MaxOutputSeconds, Vocoder: vocoder})
	if err != nil {
		t.Fatal(err)
	}
	return wavOf(t, outs[0].Audio)
}

// WithVocoder serves every release through the named vocoder: the answer
// is the model's own translation through loops, unlike its Griffin-Lim one.
func TestWithVocoderLoops(t *testing.T) {
	st := newStore(t)
	promote(t, st, "s2ut", tinyModel(t, 3, 2), 10)
	if _, err := New(st, "s2ut", WithVocoder("wavenet")); err == nil || !strings.Contains(err.Error(), `vocoder "wavenet"`) {
		t.Fatalf("unknown vocoder: err = %v", err)
	}
	ts := startServer(t, st, "s2ut", true, WithVocoder(model.VocoderLoops))
	wav := wavOf(t, speech(16000, 0.6, 1))
	resp, err := ts.client.Translate(t.Context(), &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: "de"})
	if err != nil {
		t.Fatal(err)
	}
	m := tinyModel(t, 3, 2)
	if want := expectedWith(t, m, wav, "de", model.VocoderLoops); !bytes.Equal(resp.Audio.Wav, want) {
		t.Fatal("served audio differs from the model's own translation through loops")
	}
	if gl := expected(t, m, wav, "de"); bytes.Equal(resp.Audio.Wav, gl) {
		t.Fatal("served audio is the Griffin-Lim rendering: the option did not reach the model")
	}
}

func TestNotServingBeforeFirstRelease(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	ts := startServer(t, st, "s2ut", false)
	hc := healthpb.NewHealthClient(ts.conn)
	h, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before any release: %v, %v", h, err)
	}
	_, err = ts.client.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wavOf(t, speech(16000, 1, 1))}, TargetLanguage: "fr"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Translate before any release: %v, want Unavailable", err)
	}
	promote(t, st, "s2ut", tinyModel(t, 1, 2), 1)
	select {
	case <-ts.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("not ready after the first promotion")
	}
	h, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after the first release: %v, %v", h, err)
	}
}

// Three promotions while 32 clients send requests: no request fails, and
// every answer is exactly what the release it names would say.
func TestSwapUnderLoad(t *testing.T) {
	const clients, releases = 32, 4
	st := newStore(t)
	wav := wavOf(t, speech(16000, 0.5, 3))
	// Random models whose answers to wav differ, so an answer tells which
	// release produced it.
	var models []*model.Model
	want := map[string][]byte{}
	distinct := map[string]bool{}
	for seed := uint64(1); len(models) < releases && seed < 64; seed++ {
		m := tinyModel(t, seed, 2)
		w := expected(t, m, wav, "de")
		if distinct[string(w)] {
			continue
		}
		distinct[string(w)] = true
		models = append(models, m)
		want[registry.ReleaseName("s2ut", int64(len(models)))] = w
	}
	if len(models) < releases {
		t.Fatalf("found %d models with distinct answers, want %d", len(models), releases)
	}
	promote(t, st, "s2ut", models[0], 1)
	ts := startServer(t, st, "s2ut", true)

	ctx, stop := context.WithCancel(context.Background())
	type tally struct {
		ok, failed int
		errs       []string
		seen       map[string]int
		bad        int // answers that are not their release's
		backwards  int // a release older than one this client saw before
	}
	tallies := make([]tally, clients)
	var perRelease [releases + 1]atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			tl := &tallies[c]
			tl.seen = map[string]int{}
			last := int64(0)
			for ctx.Err() == nil {
				resp, err := ts.client.Translate(context.Background(), &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: "de"})
				if err != nil {
					tl.failed++
					tl.errs = append(tl.errs, err.Error())
					continue
				}
				tl.ok++
				tl.seen[resp.ModelVersion]++
				if !bytes.Equal(resp.Audio.Wav, want[resp.ModelVersion]) {
					tl.bad++
				}
				var n int64
				for i := range releases {
					if resp.ModelVersion == registry.ReleaseName("s2ut", int64(i+1)) {
						n = int64(i + 1)
					}
				}
				perRelease[n].Add(1)
				if n < last {
					tl.backwards++
				}
				last = n
			}
		})
	}
	// Each release answers a full round of clients before the next flip,
	// so every swap happens under load.
	waitAnswers := func(n int) {
		t0 := time.Now()
		for perRelease[n].Load() < clients {
			if time.Since(t0) > time.Minute {
				t.Fatalf("release %d answered %d requests in a minute", n, perRelease[n].Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitAnswers(1)
	for i := 1; i < releases; i++ {
		t0 := time.Now()
		rel := promote(t, st, "s2ut", models[i], int64(i+1))
		for ts.Release() != rel.Name() {
			if time.Since(t0) > 30*time.Second {
				t.Fatalf("%s not serving 30s after promotion", rel.Name())
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s serving %v after its promotion returned", rel.Name(), time.Since(t0).Round(time.Millisecond))
		waitAnswers(i + 1)
	}
	stop()
	wg.Wait()
	total := tally{seen: map[string]int{}}
	for _, tl := range tallies {
		total.ok += tl.ok
		total.failed += tl.failed
		total.bad += tl.bad
		total.backwards += tl.backwards
		total.errs = append(total.errs, tl.errs...)
		for k, v := range tl.seen {
			total.seen[k] += v
		}
	}
	t.Logf("%d requests answered, %d failed, by release %v", total.ok, total.failed, total.seen)
	if total.failed > 0 {
		t.Fatalf("%d requests failed during swaps, e.g. %v", total.failed, total.errs[:min(3, len(total.errs))])
	}
	if total.bad > 0 {
		t.Fatalf("%d answers were not what the release they name would say", total.bad)
	}
	if total.backwards > 0 {
		t.Fatalf("%d answers came from an older release than the client had already seen", total.backwards)
	}
	if len(total.seen) != releases {
		t.Fatalf("answers from %d releases, want all %d", len(total.seen), releases)
	}
}

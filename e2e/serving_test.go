package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/model/eval"
	"babelfish.dev/babelfish/model/features"
	"babelfish.dev/babelfish/model/registry"
)

// utterance is one test input of the corpus: a phrase said by the
// held-out voice.
type utterance struct {
	lang, phrase string
	wav          []byte
}

// corpus reads the suite's dataset: each phrase's clean (canonical)
// rendering per language, and the held-out voice's utterances.
func corpus(t *testing.T) (canon map[[2]string][]byte, unseen []utterance) {
	t.Helper()
	ctx := context.Background()
	v, err := dataset.Open(ctx, s.store, s.dataset, "v1")
	if err != nil {
		t.Fatal(err)
	}
	canon = map[[2]string][]byte{}
	for _, si := range v.Manifest.Shards {
		data, err := v.Artifact.Get(ctx, si.Key)
		if err != nil {
			t.Fatal(err)
		}
		rd := shard.NewReader(si.Key, bytes.NewReader(data))
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range rec.Utterances {
				switch {
				case u.Canon:
					canon[[2]string{u.Lang, rec.Key}] = bytes.Clone(u.Audio)
				case rec.Split == shard.SplitTrain && strings.HasPrefix(u.Speaker, "m7/"):
					unseen = append(unseen, utterance{lang: u.Lang, phrase: rec.Key, wav: bytes.Clone(u.Audio)})
				}
			}
		}
	}
	if len(canon) == 0 || len(unseen) == 0 {
		t.Fatalf("corpus: %d canonical renderings, %d held-out-voice utterances", len(canon), len(unseen))
	}
	return canon, unseen
}

// templates are the concept-accuracy evaluator's references: every
// phrase's clean rendering per language, through the model's frontend.
func templates(t *testing.T, front *features.Frontend, canon map[[2]string][]byte) *eval.Templates {
	t.Helper()
	tpl := eval.NewTemplates()
	for k, wav := range canon {
		if err := tpl.Add(k[0], k[1], logMel(t, front, wav)); err != nil {
			t.Fatal(err)
		}
	}
	return tpl
}

func logMel(t *testing.T, front *features.Frontend, wav []byte) audio.Spectrogram {
	t.Helper()
	clip, err := audio.DecodeWAV(wav, audio.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := front.LogMel(clip)
	if err != nil {
		t.Fatal(err)
	}
	return lm
}

func dialTranslator(t *testing.T) babelfishv1.TranslatorClient {
	t.Helper()
	conn, err := grpc.NewClient(s.up.serving, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return babelfishv1.NewTranslatorClient(conn)
}

// trained makes sure the suite's "train" job exists and succeeded (it is
// TestTrainCheckpointEvaluate's; run alone, this trains it).
func trained(t *testing.T) *v1alpha1.TrainingJob {
	t.Helper()
	if _, err := s.up.client(t).Get(context.Background(), "train"); err != nil {
		submit(t, jobSpec{name: "train", steps: 1500, checkpointEvery: 250, backoffLimit: 3})
	}
	return waitJob(t, "train", 5*time.Minute, "success", succeeded)
}

// promote makes a checkpoint the model's current release with `babelfish
// promote`, and returns the release.
func promote(t *testing.T, ckpt string) registry.Release {
	t.Helper()
	if out, err := s.up.babelfish(context.Background(), "promote", "--model", "e2e", "--checkpoint", ckpt); err != nil {
		t.Fatalf("promote %s: %v\n%s", ckpt, err, out)
	}
	reg, err := registry.New(s.store, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := reg.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rel, err := reg.Get(context.Background(), cur.Release)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Checkpoint != ckpt {
		t.Fatalf("current release %s is of %s, want %s", rel.Name(), rel.Checkpoint, ckpt)
	}
	return rel
}

// waitServing translates until the answer comes from release want.
func waitServing(t *testing.T, c babelfishv1.TranslatorClient, wav []byte, target, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := c.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: target})
		cancel()
		if err == nil && resp.GetModelVersion() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serving never answered from %s: last answer %q, err %v", want, resp.GetModelVersion(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPromoteTranslate: the trained job's checkpoint is promoted; up's
// serving tier picks the release up; translations of the held-out voice
// into every other language, scored by the concept-accuracy evaluator
// (nearest clean rendering by DTW), say the right phrase more often than
// the input itself would.
func TestPromoteTranslate(t *testing.T) {
	j := trained(t)
	rel := promote(t, j.Status.LatestCheckpoint.Path)
	c := dialTranslator(t)
	canon, unseen := corpus(t)
	waitServing(t, c, unseen[0].wav, "en", rel.Name())

	reg, err := registry.New(s.store, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	m, err := reg.Load(context.Background(), rel)
	if err != nil {
		t.Fatal(err)
	}
	front := m.Frontend()
	tpl := templates(t, front, canon)
	var served, copied eval.Tally
	for i, u := range unseen {
		for _, target := range []string{"de", "en", "fr"} {
			if target == u.lang {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			resp, err := c.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: u.wav}, TargetLanguage: target, SourceLanguage: u.lang})
			cancel()
			if err != nil {
				t.Fatalf("translate %s %s -> %s: %v", u.phrase, u.lang, target, err)
			}
			if resp.GetModelVersion() != rel.Name() {
				t.Fatalf("answered by %q, want %q", resp.GetModelVersion(), rel.Name())
			}
			got, _, err := tpl.Nearest(target, logMel(t, front, resp.GetAudio().GetWav()))
			if err != nil {
				t.Fatal(err)
			}
			served.Add(got == u.phrase, eval.MCD(logMel(t, front, canon[[2]string{target, u.phrase}]), logMel(t, front, resp.GetAudio().GetWav())))
			base, _, err := tpl.Nearest(target, logMel(t, front, u.wav))
			if err != nil {
				t.Fatal(err)
			}
			copied.Add(base == u.phrase, eval.MCD(logMel(t, front, canon[[2]string{target, u.phrase}]), logMel(t, front, u.wav)))
			if i == 0 {
				t.Logf("%s said in %s -> %s: heard as %s", u.phrase, u.lang, target, got)
			}
		}
	}
	// And once through `babelfish translate`, as a person would.
	in, out := filepath.Join(t.TempDir(), "in.wav"), filepath.Join(t.TempDir(), "out.wav")
	if err := os.WriteFile(in, unseen[0].wav, 0o644); err != nil {
		t.Fatal(err)
	}
	target := "fr"
	if unseen[0].lang == "fr" {
		target = "de"
	}
	if o, err := s.up.babelfish(context.Background(), "translate", "--server", s.up.serving, "--to", target, in, "-o", out); err != nil {
		t.Fatalf("babelfish translate: %v\n%s", err, o)
	}
	wav, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	heard, _, err := tpl.Nearest(target, logMel(t, front, wav))
	if err != nil {
		t.Fatal(err)
	}
	served.Add(heard == unseen[0].phrase, eval.MCD(logMel(t, front, canon[[2]string{target, unseen[0].phrase}]), logMel(t, front, wav)))
	t.Logf("babelfish translate: %s said in %s -> %s: out.wav heard as %s", unseen[0].phrase, unseen[0].lang, target, heard)
	t.Logf("served %s, held-out voice: %s; copying the input: %s", rel.Name(), served.String(), copied.String())
	if served.Accuracy() <= copied.Accuracy() {
		t.Fatalf("served translations are no better than the input: %s vs %s", served.String(), copied.String())
	}
}

// TestPromotionWhileTranslating: clients translate in a loop while a new
// release is promoted; every request succeeds, and answers move from the
// old release to the new one.
func TestPromotionWhileTranslating(t *testing.T) {
	j := trained(t)
	c := dialTranslator(t)
	_, unseen := corpus(t)
	first := promote(t, fmt.Sprintf("checkpoints/%s/%012d/", j.Name, 1000))
	waitServing(t, c, unseen[0].wav, "de", first.Name())

	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		seen       = map[string]int{}
		errs       []error
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for w := range 2 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				u := unseen[i%len(unseen)]
				target := "en"
				if u.lang == "en" {
					target = "fr"
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				resp, err := c.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: u.wav}, TargetLanguage: target})
				cancel()
				mu.Lock()
				if err != nil {
					failed.Add(1)
					errs = append(errs, err)
				} else {
					ok.Add(1)
					seen[resp.GetModelVersion()]++
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(2 * time.Second)
	second := promote(t, j.Status.LatestCheckpoint.Path)
	promoted := time.Now()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := seen[second.Name()]
		mu.Unlock()
		if n >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d translations, %d failed; by release: %v; new release served %v after promotion",
		ok.Load(), failed.Load(), seen, time.Since(promoted).Round(time.Millisecond))
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed during the promotion, first: %v", failed.Load(), errs[0])
	}
	if seen[first.Name()] == 0 || seen[second.Name()] < 20 {
		t.Fatalf("answers by release %v: want both %s and at least 20 from %s", seen, first.Name(), second.Name())
	}
}

// TestAutoPromotion: a job whose promotion policy is Auto on
// concept_accuracy is evaluated when it succeeds and, its model having no
// release yet, becomes the model's current release by itself.
func TestAutoPromotion(t *testing.T) {
	submit(t, jobSpec{name: "auto", steps: 1000, checkpointEvery: 500, backoffLimit: 3, model: "e2e-auto",
		promotion: "  promotion: {mode: Auto, metric: concept_accuracy}\n"})
	j := waitJob(t, "auto", 5*time.Minute, "success", succeeded)
	reg, err := registry.New(s.store, "e2e-auto")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cur, err := reg.Current(context.Background())
		if err == nil {
			rel, err := reg.Get(context.Background(), cur.Release)
			if err != nil {
				t.Fatal(err)
			}
			if rel.Checkpoint != j.Status.LatestCheckpoint.Path {
				t.Fatalf("release %s is of %s, want the job's last checkpoint %s", rel.Name(), rel.Checkpoint, j.Status.LatestCheckpoint.Path)
			}
			t.Logf("auto-promoted %s from %s: %s", rel.Name(), rel.Checkpoint, rel.Note)
			return
		}
		if !errors.Is(err, registry.ErrNoCurrent) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no release of e2e-auto 3m after the job succeeded; up's log:\n%s", tail(s.up.out.String(), 4000))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

package loader

import (
	"context"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/testenv"
)

// TestStreamSyntheticCorpus streams a real espeak-ng build: every train
// utterance exactly once, each a WAV of the manifest's rate whose length
// is the one its header gives, each record holding all its languages.
func TestStreamSyntheticCorpus(t *testing.T) {
	st := newStore(t, nil)
	ctx := context.Background()
	bin, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	cldr, err := corpus.OpenCLDR(corpus.DefaultCLDRDir)
	if err != nil {
		t.Fatal(err)
	}
	spec := dataset.DefaultSynthSpec()
	spec.Languages = []string{"de", "en", "es", "fr", "ja"}
	spec.Phrases = corpus.PhraseSpec{Categories: []corpus.Category{corpus.Numbers}, NumberMax: 3}
	spec.Variants, spec.UnseenVoices = []string{"m1", "f1"}, nil
	spec.Speeds, spec.Pitches = []int{170}, []int{50}
	spec.UnseenPhrases = []string{corpus.NumberID(3)}
	spec.ShardBytes = 1 << 20
	if _, err := dataset.BuildSynthetic(ctx, dataset.SynthBuild{Store: st.c, Name: "espeak", Version: "v1", Spec: spec,
		Espeak: corpus.Espeak{Path: bin}, CLDR: cldr}); err != nil {
		t.Fatal(err)
	}
	v, err := dataset.Open(ctx, st.c, "espeak", "v1")
	if err != nil {
		t.Fatal(err)
	}
	train := indexesOf(v.Manifest, shard.SplitTrain)
	// numbers 0..2 in training, 5 languages, 2 voices + the canonical one.
	if len(train) != 3*5*3 {
		t.Fatalf("%d train utterances, want 45", len(train))
	}
	opts := Options{Seed: 1, Partition: Partition{GlobalBatch: 8}, Splits: []string{shard.SplitTrain}, Epochs: 1, BucketWindow: 2}
	var got []int
	for r := 0; r < 2; r++ {
		o := opts
		o.Partition.Rank, o.Partition.World = r, 2
		s, err := New(ctx, v.Artifact, v.Manifest, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for {
			b, err := s.Next(ctx)
			if err != nil {
				break
			}
			for _, smp := range b.Samples {
				got = append(got, smp.Index)
				u := smp.Utterance()
				clip, err := audio.DecodeWAV(u.Audio, audio.Limits{})
				if err != nil {
					t.Fatalf("sample %d (%s %s %s): %v", smp.Index, smp.Record.Key, u.Lang, u.Speaker, err)
				}
				if clip.Rate != spec.SampleRate || len(clip.Samples) != u.Samples {
					t.Errorf("sample %d: %d Hz, %d samples; header says %d Hz, %d samples", smp.Index, clip.Rate, len(clip.Samples), spec.SampleRate, u.Samples)
				}
				langs := map[string]bool{}
				for _, x := range smp.Record.Utterances {
					langs[x.Lang] = true
				}
				if len(langs) != 5 {
					t.Errorf("record %s holds %d languages, want 5", smp.Record.Key, len(langs))
				}
			}
		}
	}
	if err := exactOnce(got, train); err != nil {
		t.Fatal(err)
	}
}

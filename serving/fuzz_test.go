package serving

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
)

// FuzzTranslate feeds arbitrary requests to the Translate handler of a
// serving Server: it must never panic or fail internally, only answer or
// refuse with INVALID_ARGUMENT (or shed load), and any answer must be a
// well-formed WAV from the serving release.
func FuzzTranslate(f *testing.F) {
	st := newStore(f)
	rel := promote(f, st, "s2ut", tinyModel(f, 3, 2), 1)
	lim := testLimits()
	lim.MaxSeconds = 2
	ts := startServer(f, st, "s2ut", true, WithLimits(lim))
	good := wavOf(f, speech(16000, 0.3, 1))
	f.Add(good, "fr", "", int32(0), float32(0))
	f.Add(good[:len(good)/2], "de", "en", int32(2), float32(0.1))
	f.Add(good[:44], "en", "", int32(1), float32(0))
	f.Add([]byte{}, "fr", "", int32(0), float32(0))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt "), "fr", "xx", int32(-1), float32(-1))
	f.Add(wavOf(f, speech(8000, 0.2, 2)), "fr", "", int32(64), float32(1e9))
	f.Fuzz(func(t *testing.T, wav []byte, target, source string, beam int32, maxOut float32) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := ts.Translate(ctx, &babelfishv1.TranslateRequest{
			Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: target, SourceLanguage: source,
			Decode: &babelfishv1.DecodeOptions{BeamSize: beam, MaxOutputSeconds: maxOut},
		})
		switch status.Code(err) {
		case codes.OK:
			if resp.ModelVersion != rel.Name() {
				t.Fatalf("answered by %q", resp.ModelVersion)
			}
			if _, err := audio.DecodeWAV(resp.Audio.GetWav(), audio.Limits{}); err != nil {
				t.Fatalf("answer is not a WAV: %v", err)
			}
		case codes.InvalidArgument, codes.ResourceExhausted:
		default:
			t.Fatalf("Translate: %v", err)
		}
	})
}

package serving

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"
	"time"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
)

// TestStreamTranslate sends two utterances separated by a pause in small
// chunks and gets one answer per utterance, in order, with its place in
// the input.
func TestStreamTranslate(t *testing.T) {
	st := newStore(t)
	rel := promote(t, st, "s2ut", tinyModel(t, 3, 2), 1)
	ts := startServer(t, st, "s2ut", true)
	const rate = 16000
	// silence 0.3 s, tone 0.6 s, silence 0.6 s, tone 0.5 s, silence 0.3 s
	var x []float32
	for _, sp := range []struct {
		sec  float64
		loud bool
	}{{0.3, false}, {0.6, true}, {0.6, false}, {0.5, true}, {0.3, false}} {
		for i := range int(sp.sec * rate) {
			v := 0.0
			if sp.loud {
				v = 0.3 * math.Sin(2*math.Pi*200*float64(i)/rate)
			}
			x = append(x, float32(v))
		}
	}
	pcm := make([]byte, 2*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(audio.ToPCM16(v)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := ts.client.StreamTranslate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&babelfishv1.StreamTranslateRequest{Msg: &babelfishv1.StreamTranslateRequest_Config{
		Config: &babelfishv1.StreamConfig{TargetLanguage: "fr", SampleRate: rate}}}); err != nil {
		t.Fatal(err)
	}
	const chunk = 2 * rate / 10 // 100 ms
	for i := 0; i < len(pcm); i += chunk {
		if err := stream.Send(&babelfishv1.StreamTranslateRequest{Msg: &babelfishv1.StreamTranslateRequest_Pcm{Pcm: pcm[i:min(i+chunk, len(pcm))]}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var got []*babelfishv1.StreamTranslateResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 2 {
		t.Fatalf("%d segments answered, want 2", len(got))
	}
	wants := [][2]float64{{0.2, 1.0}, {1.4, 2.1}} // speech plus 100 ms pad each side
	for i, r := range got {
		if r.Segment != int32(i) || r.ModelVersion != rel.Name() || r.OutputSampleRate != 16000 {
			t.Fatalf("segment %d: %+v", i, r)
		}
		if math.Abs(r.InputStartSeconds-wants[i][0]) > 0.03 || math.Abs(r.InputEndSeconds-wants[i][1]) > 0.03 {
			t.Fatalf("segment %d spans %.2f..%.2f s, want about %.2f..%.2f", i, r.InputStartSeconds, r.InputEndSeconds, wants[i][0], wants[i][1])
		}
		if _, err := audio.DecodeWAV(r.Audio.GetWav(), audio.Limits{}); err != nil {
			t.Fatalf("segment %d audio: %v", i, err)
		}
	}
}

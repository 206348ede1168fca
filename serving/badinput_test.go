package serving

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
)

// TestBadInputs answers every kind of bad request with its code and a
// message naming the field and limit, and the server keeps serving.
func TestBadInputs(t *testing.T) {
	st := newStore(t)
	promote(t, st, "s2ut", tinyModel(t, 3, 2), 1)
	lim := testLimits()
	lim.MaxStreamSeconds = 2
	lim.StreamIdleTimeout = 300 * time.Millisecond
	ts := startServer(t, st, "s2ut", true, WithLimits(lim))
	good := wavOf(t, speech(16000, 0.5, 1))
	at := func(rate int, seconds float64) []byte { return wavOf(t, speech(rate, seconds, 1)) }
	req := func(wav []byte, lang string) *babelfishv1.TranslateRequest {
		return &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: lang}
	}
	withDecode := func(beam int32, maxOut float32) *babelfishv1.TranslateRequest {
		r := req(good, "fr")
		r.Decode = &babelfishv1.DecodeOptions{BeamSize: beam, MaxOutputSeconds: maxOut}
		return r
	}
	// A data chunk that claims more bytes than follow.
	truncated := append([]byte(nil), good[:len(good)/2]...)
	// A header cut short inside the fmt chunk.
	cutHeader := append([]byte(nil), good[:30]...)
	garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000)
	huge := make([]byte, lim.MaxBytes+1)
	copy(huge, good)

	for _, tc := range []struct {
		name  string
		req   *babelfishv1.TranslateRequest
		code  codes.Code
		field string
		msg   string
	}{
		{"empty audio", req(nil, "fr"), codes.InvalidArgument, "audio.wav", "empty"},
		{"garbage bytes", req(garbage, "fr"), codes.InvalidArgument, "audio.wav", "malformed"},
		{"truncated WAV data", req(truncated, "fr"), codes.InvalidArgument, "audio.wav", "audio"},
		{"truncated WAV header", req(cutHeader, "fr"), codes.InvalidArgument, "audio.wav", "malformed"},
		{"sample rate too low", req(at(4000, 0.5), "fr"), codes.InvalidArgument, "audio.wav", "MinRate"},
		{"sample rate too high", req(at(96000, 0.2), "fr"), codes.InvalidArgument, "audio.wav", "MaxRate"},
		{"10-minute audio", req(at(8000, 600), "fr"), codes.InvalidArgument, "audio.wav", "MaxSeconds"},
		{"over MaxBytes", req(huge, "fr"), codes.InvalidArgument, "audio.wav", "MaxBytes"},
		{"too short", req(at(16000, 0.01), "fr"), codes.InvalidArgument, "audio.wav", "MinSeconds"},
		{"unknown language", req(good, "xx"), codes.InvalidArgument, "target_language", "de, en, fr"},
		{"no language", req(good, ""), codes.InvalidArgument, "target_language", "required"},
		{"not a language code", req(good, "f r"), codes.InvalidArgument, "target_language", "not a language code"},
		{"unknown source language", &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: good}, TargetLanguage: "fr", SourceLanguage: "zz"}, codes.InvalidArgument, "source_language", "zz"},
		{"beam too wide", withDecode(99, 0), codes.InvalidArgument, "decode.beam_size", "MaxBeam"},
		{"negative beam", withDecode(-1, 0), codes.InvalidArgument, "decode.beam_size", "MaxBeam"},
		{"output too long", withDecode(0, 1e6), codes.InvalidArgument, "decode.max_output_seconds", "MaxOutputSeconds"},
		{"output NaN", withDecode(0, float32(math.NaN())), codes.InvalidArgument, "decode.max_output_seconds", "MaxOutputSeconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ts.client.Translate(context.Background(), tc.req)
			checkStatus(t, err, tc.code, tc.field, tc.msg)
		})
	}

	pcm := func(seconds float64) []byte {
		c := speech(16000, seconds, 2)
		b := make([]byte, 2*len(c.Samples))
		for i, v := range c.Samples {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(audio.ToPCM16(v)))
		}
		return b
	}
	cfg := func(lang string, rate int32) *babelfishv1.StreamTranslateRequest {
		return &babelfishv1.StreamTranslateRequest{Msg: &babelfishv1.StreamTranslateRequest_Config{Config: &babelfishv1.StreamConfig{TargetLanguage: lang, SampleRate: rate}}}
	}
	audioMsg := func(b []byte) *babelfishv1.StreamTranslateRequest {
		return &babelfishv1.StreamTranslateRequest{Msg: &babelfishv1.StreamTranslateRequest_Pcm{Pcm: b}}
	}
	for _, tc := range []struct {
		name   string
		send   []*babelfishv1.StreamTranslateRequest
		close  bool // CloseSend after send
		code   codes.Code
		field  string
		msg    string
		within time.Duration
	}{
		{"audio before config", []*babelfishv1.StreamTranslateRequest{audioMsg(pcm(0.1))}, true, codes.InvalidArgument, "config", "StreamConfig", 0},
		{"ends before config", nil, true, codes.InvalidArgument, "config", "first message", 0},
		{"unknown language", []*babelfishv1.StreamTranslateRequest{cfg("xx", 16000)}, true, codes.InvalidArgument, "config.target_language", "xx", 0},
		{"wrong sample rate", []*babelfishv1.StreamTranslateRequest{cfg("fr", 1000)}, true, codes.InvalidArgument, "config.sample_rate", "MinRate", 0},
		{"odd PCM bytes", []*babelfishv1.StreamTranslateRequest{cfg("fr", 16000), audioMsg([]byte{1, 2, 3})}, true, codes.InvalidArgument, "pcm", "2 bytes", 0},
		{"config twice", []*babelfishv1.StreamTranslateRequest{cfg("fr", 16000), cfg("fr", 16000)}, true, codes.InvalidArgument, "config", "twice", 0},
		{"streaming without end: silent client", []*babelfishv1.StreamTranslateRequest{cfg("fr", 16000), audioMsg(pcm(0.1))}, false, codes.DeadlineExceeded, "", "StreamIdleTimeout", 5 * time.Second},
		{"streaming without end: endless audio", []*babelfishv1.StreamTranslateRequest{cfg("fr", 16000), audioMsg(pcm(1)), audioMsg(pcm(1)), audioMsg(pcm(1))}, false, codes.InvalidArgument, "pcm", "MaxStreamSeconds", 0},
	} {
		t.Run("stream/"+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			t0 := time.Now()
			stream, err := ts.client.StreamTranslate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.send {
				if err := stream.Send(m); err != nil {
					break // the server may have answered already
				}
			}
			if tc.close {
				_ = stream.CloseSend()
			}
			for {
				if _, err = stream.Recv(); err != nil {
					break
				}
			}
			checkStatus(t, err, tc.code, tc.field, tc.msg)
			if tc.within > 0 && time.Since(t0) > tc.within {
				t.Fatalf("answered after %v, want within %v", time.Since(t0), tc.within)
			}
		})
	}

	// Still serving.
	if _, err := ts.client.Translate(context.Background(), req(good, "fr")); err != nil {
		t.Fatalf("after bad inputs: %v", err)
	}
}

// checkStatus wants code, a message containing msg, and for
// INVALID_ARGUMENT a BadRequest detail naming field.
func checkStatus(t *testing.T, err error, code codes.Code, field, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !contains(st.Message(), msg) {
		t.Fatalf("got %v %q, want %v with %q", st.Code(), st.Message(), code, msg)
	}
	if code != codes.InvalidArgument {
		return
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 && br.FieldViolations[0].Field == field {
			return
		}
	}
	t.Fatalf("%q: no BadRequest detail naming field %q (details %v)", st.Message(), field, st.Details())
}

// TestCheckClipNonFinite covers what DecodeWAV never yields but a future
// audio path might: one NaN or infinite sample anywhere rejects the clip.
func TestCheckClipNonFinite(t *testing.T) {
	s := &Server{}
	for _, tc := range []struct {
		name string
		v    float32
		ok   bool
	}{
		{"finite", 0.5, true},
		{"largest", math.MaxFloat32, true},
		{"NaN", float32(math.NaN()), false},
		{"+Inf", float32(math.Inf(1)), false},
		{"-Inf", float32(math.Inf(-1)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			samples := make([]float32, 1000)
			samples[617] = tc.v
			err := s.checkClip(audio.Clip{Rate: 16000, Samples: samples})
			if (err == nil) != tc.ok {
				t.Fatalf("checkClip = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

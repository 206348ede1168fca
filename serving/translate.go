package serving

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/serving/batcher"
)

// maxLangCode bounds a language code's length (BCP 47 tags in practice
// stay far below it).
const maxLangCode = 35

// invalid is an INVALID_ARGUMENT naming the request field at fault.
func invalid(field, format string, args ...any) error {
	msg := field + ": " + fmt.Sprintf(format, args...)
	st, err := status.New(codes.InvalidArgument, msg).WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	})
	if err != nil {
		return status.Error(codes.InvalidArgument, msg)
	}
	return st.Err()
}

func overloaded(oe *batcher.OverloadError) error {
	st, err := status.New(codes.ResourceExhausted, oe.Error()).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(oe.RetryAfter)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, oe.Error())
	}
	return st.Err()
}

// toStatus maps an error from the batcher or the model to a gRPC status.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var oe *batcher.OverloadError
	var ul *model.UnknownLanguageError
	switch {
	case errors.As(err, &oe):
		return overloaded(oe)
	case errors.As(err, &ul):
		return invalid("target_language", "%q is not a language this model speaks; it speaks %s", ul.Lang, strings.Join(ul.Known, ", "))
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, errNoRelease):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// request is a checked Translate (or stream segment) request.
type request struct {
	in  model.Input
	opt model.DecodeOptions
}

func (s *Server) checkLang(field, lang string, required bool) error {
	if lang == "" {
		if required {
			return invalid(field, "is required (e.g. \"fr\"); ListLanguages lists the choices")
		}
		return nil
	}
	if len(lang) > maxLangCode {
		return invalid(field, "is %d characters: limit %d", len(lang), maxLangCode)
	}
	for _, r := range lang {
		if !(r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return invalid(field, "%q is not a language code", lang)
		}
	}
	return nil
}

func (s *Server) checkDecode(d *babelfishv1.DecodeOptions) (model.DecodeOptions, error) {
	lim := s.opt.limits
	opt := model.DecodeOptions{MaxSeconds: lim.MaxOutputSeconds, Vocoder: s.opt.vocoder}
	if d == nil {
		return opt, nil
	}
	if d.BeamSize < 0 || int(d.BeamSize) > lim.MaxBeam {
		return opt, invalid("decode.beam_size", "%d: want 0..%d (limit MaxBeam)", d.BeamSize, lim.MaxBeam)
	}
	opt.Beam = int(d.BeamSize)
	ms := float64(d.MaxOutputSeconds)
	if math.IsNaN(ms) || ms < 0 || ms > lim.MaxOutputSeconds {
		return opt, invalid("decode.max_output_seconds", "%g: want 0..%g (limit MaxOutputSeconds; 0 means the limit)", ms, lim.MaxOutputSeconds)
	}
	if ms > 0 {
		opt.MaxSeconds = ms
	}
	return opt, nil
}

func (s *Server) audioLimits() audio.Limits {
	l := s.opt.limits
	return audio.Limits{MaxBytes: l.MaxBytes, MaxSeconds: l.MaxSeconds, MinRate: l.MinRate, MaxRate: l.MaxRate, MaxChannels: l.MaxChannels}
}

// parse checks a Translate request against the limits and decodes its
// audio. Languages are checked against the release later, when one is
// picked.
func (s *Server) parse(req *babelfishv1.TranslateRequest) (request, error) {
	var r request
	if err := s.checkLang("target_language", req.GetTargetLanguage(), true); err != nil {
		return r, err
	}
	if err := s.checkLang("source_language", req.GetSourceLanguage(), false); err != nil {
		return r, err
	}
	opt, err := s.checkDecode(req.GetDecode())
	if err != nil {
		return r, err
	}
	wav := req.GetAudio().GetWav()
	if len(wav) == 0 {
		return r, invalid("audio.wav", "is empty: send a WAV file (PCM 16-bit mono is the wire format)")
	}
	if int64(len(wav)) > s.opt.limits.MaxBytes {
		return r, invalid("audio.wav", "is %d bytes: limit %d bytes (MaxBytes)", len(wav), s.opt.limits.MaxBytes)
	}
	clip, err := audio.DecodeWAV(wav, s.audioLimits())
	if err != nil {
		if audio.IsInvalidInput(err) {
			return r, invalid("audio.wav", "%v", err)
		}
		return r, status.Error(codes.Internal, err.Error())
	}
	if err := s.checkClip(clip); err != nil {
		return r, err
	}
	return request{in: model.Input{Audio: clip, TargetLang: req.GetTargetLanguage()}, opt: opt}, nil
}

func (s *Server) checkClip(c audio.Clip) error {
	if sec := c.Seconds(); sec < s.opt.limits.MinSeconds {
		return invalid("audio.wav", "holds %.3f s of audio: limit %g s (MinSeconds)", sec, s.opt.limits.MinSeconds)
	}
	// v*0 is 0 for every finite sample and NaN for NaN or ±Inf, and a NaN
	// survives the sum: one branch-free pass instead of two tests a
	// sample, in four independent sums so that each add need not wait
	// for the one before.
	var z0, z1, z2, z3 float32
	x := c.Samples
	for len(x) >= 4 {
		z0 += x[0] * 0
		z1 += x[1] * 0
		z2 += x[2] * 0
		z3 += x[3] * 0
		x = x[4:]
	}
	for _, v := range x {
		z0 += v * 0
	}
	if z0+z1+z2+z3 != 0 {
		return invalid("audio.wav", "holds NaN or infinite samples")
	}
	return nil
}

// maxSwapRetries bounds how often a request moves to a newer release
// because the one it picked began draining between pick and queue.
const maxSwapRetries = 8

// run sends a checked request to the serving release and returns its
// output, the release that produced it and the timing.
func (s *Server) run(ctx context.Context, r request, sourceLang string) (model.Output, *engine, batcher.Info, error) {
	for range maxSwapRetries {
		e := s.cur.Load()
		if e == nil {
			return model.Output{}, nil, batcher.Info{}, toStatus(errNoRelease)
		}
		if !e.knows(r.in.TargetLang) {
			return model.Output{}, e, batcher.Info{}, invalid("target_language", "%q is not a language %s speaks; it speaks %s", r.in.TargetLang, e.name, strings.Join(e.langs, ", "))
		}
		if sourceLang != "" && !e.knows(sourceLang) {
			return model.Output{}, e, batcher.Info{}, invalid("source_language", "%q is not a language %s hears; it hears %s", sourceLang, e.name, strings.Join(e.langs, ", "))
		}
		out, info, err := e.b.Submit(ctx, r.opt, r.in)
		if errors.Is(err, batcher.ErrClosed) {
			continue // swapped meanwhile: the new release takes it
		}
		if err == nil && out.err != nil {
			err = out.err
		}
		if err != nil {
			return model.Output{}, e, info, toStatus(err)
		}
		return out.out, e, info, nil
	}
	return model.Output{}, nil, batcher.Info{}, status.Error(codes.Unavailable, "releases changed too often while queueing; retry")
}

// admit rejects at once when the serving release's queue is full, before
// any decoding.
func (s *Server) admit() error {
	e := s.cur.Load()
	if e == nil {
		return toStatus(errNoRelease)
	}
	var oe *batcher.OverloadError
	if err := e.b.Admit(); errors.As(err, &oe) {
		return overloaded(oe)
	}
	return nil
}

// Translate translates one utterance.
func (s *Server) Translate(ctx context.Context, req *babelfishv1.TranslateRequest) (*babelfishv1.TranslateResponse, error) {
	t0 := time.Now()
	resp, e, err := s.translate(ctx, req, t0)
	s.observe("Translate", e, t0, err)
	return resp, err
}

func (s *Server) translate(ctx context.Context, req *babelfishv1.TranslateRequest, t0 time.Time) (*babelfishv1.TranslateResponse, *engine, error) {
	if err := s.admit(); err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			s.rejected(t0)
		}
		return nil, s.cur.Load(), err
	}
	r, err := s.parse(req)
	if err != nil {
		return nil, s.cur.Load(), err
	}
	out, e, info, err := s.run(ctx, r, req.GetSourceLanguage())
	if err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			s.rejected(t0)
		}
		return nil, e, err
	}
	s.met.queue.WithLabelValues(e.name).Observe(info.Queue.Seconds())
	s.met.compute.WithLabelValues(e.name).Observe(info.Compute.Seconds())
	wav, err := audio.EncodeWAV(out.Audio, audio.PCM16)
	if err != nil {
		return nil, e, status.Error(codes.Internal, err.Error())
	}
	return &babelfishv1.TranslateResponse{
		Audio:            &babelfishv1.Audio{Wav: wav},
		OutputSampleRate: int32(out.Audio.Rate),
		ModelVersion:     e.name,
		SourceLanguage:   req.GetSourceLanguage(),
		Timing:           &babelfishv1.Timing{QueueSeconds: info.Queue.Seconds(), ComputeSeconds: info.Compute.Seconds(), BatchSize: int32(info.Batch)},
	}, e, nil
}

// rejected counts a request shed since t0.
func (s *Server) rejected(t0 time.Time) {
	d := time.Since(t0)
	s.met.rejected.WithLabelValues("queue_full").Inc()
	s.met.rejectIn.Observe(d.Seconds())
	if s.onReject != nil {
		s.onReject(d)
	}
}

func (s *Server) observe(method string, e *engine, t0 time.Time, err error) {
	rel := "none"
	if e != nil {
		rel = e.name
	}
	s.met.request.WithLabelValues(rel, method).Observe(time.Since(t0).Seconds())
	if err == nil {
		s.met.success.WithLabelValues(rel, method).Inc()
		return
	}
	s.met.failure.WithLabelValues(rel, method, status.Code(err).String()).Inc()
}

// ListLanguages lists the serving release's languages.
func (s *Server) ListLanguages(context.Context, *babelfishv1.ListLanguagesRequest) (*babelfishv1.ListLanguagesResponse, error) {
	e := s.cur.Load()
	if e == nil {
		return nil, toStatus(errNoRelease)
	}
	resp := &babelfishv1.ListLanguagesResponse{ModelVersion: e.name}
	names := display.English.Languages()
	for _, code := range e.langs {
		name := code
		if tag, err := language.Parse(code); err == nil {
			if n := names.Name(tag); n != "" {
				name = n
			}
		}
		// The model translates from and into every language it was
		// trained on.
		resp.Languages = append(resp.Languages, &babelfishv1.Language{Code: code, Name: name, Target: true, Source: true})
	}
	return resp, nil
}

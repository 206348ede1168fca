package serving

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/serving/vad"
)

// streamBacklog is how many found segments may wait for translation before
// the server stops reading the client (gRPC flow control then pushes back).
const streamBacklog = 4

// StreamTranslate translates speech segment by segment as the VAD finds
// pauses. The first message must be a StreamConfig; the rest carry PCM16.
func (s *Server) StreamTranslate(stream babelfishv1.Translator_StreamTranslateServer) error {
	t0 := time.Now()
	e, err := s.streamTranslate(stream)
	s.observe("StreamTranslate", e, t0, err)
	return err
}

type segmentJob struct {
	index int
	seg   vad.Segment
}

func (s *Server) streamTranslate(stream babelfishv1.Translator_StreamTranslateServer) (*engine, error) {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	lim := s.opt.limits

	msgs := make(chan *babelfishv1.StreamTranslateRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	idle := time.NewTimer(lim.StreamIdleTimeout)
	defer idle.Stop()
	next := func() (*babelfishv1.StreamTranslateRequest, error) {
		idle.Reset(lim.StreamIdleTimeout)
		select {
		case m := <-msgs:
			return m, nil
		case err := <-recvErr:
			return nil, err
		case <-idle.C:
			return nil, status.Errorf(codes.DeadlineExceeded, "stream sent nothing for %v (limit StreamIdleTimeout); close the send side to end a stream", lim.StreamIdleTimeout)
		case <-ctx.Done():
			return nil, toStatus(ctx.Err())
		}
	}

	first, err := next()
	if errors.Is(err, io.EOF) {
		return s.cur.Load(), invalid("config", "stream ended before its first message: the first message must carry a StreamConfig")
	}
	if err != nil {
		return s.cur.Load(), toStatus(err)
	}
	cfg := first.GetConfig()
	if cfg == nil {
		return s.cur.Load(), invalid("config", "the first message must carry a StreamConfig, not audio")
	}
	if err := s.checkLang("config.target_language", cfg.TargetLanguage, true); err != nil {
		return s.cur.Load(), err
	}
	if err := s.checkLang("config.source_language", cfg.SourceLanguage, false); err != nil {
		return s.cur.Load(), err
	}
	if r := int(cfg.SampleRate); r < lim.MinRate || r > lim.MaxRate {
		return s.cur.Load(), invalid("config.sample_rate", "%d Hz: want %d..%d Hz (limits MinRate, MaxRate)", cfg.SampleRate, lim.MinRate, lim.MaxRate)
	}
	opt, err := s.checkDecode(cfg.Decode)
	if err != nil {
		return s.cur.Load(), err
	}
	// Check the language against the serving release now, so a bad one
	// fails before any audio is sent.
	if e := s.cur.Load(); e == nil {
		return nil, toStatus(errNoRelease)
	} else if !e.knows(cfg.TargetLanguage) {
		return e, invalid("config.target_language", "%q is not a language %s speaks", cfg.TargetLanguage, e.name)
	}
	vcfg := s.opt.vad
	vcfg.Rate = int(cfg.SampleRate)
	// A segment is a Translate input, so it obeys MaxSeconds.
	if vcfg.MaxSegment <= 0 {
		vcfg.MaxSegment = 15 * time.Second
	}
	vcfg.MaxSegment = min(vcfg.MaxSegment, time.Duration(lim.MaxSeconds*float64(time.Second)))
	seg, err := vad.New(vcfg)
	if err != nil {
		return s.cur.Load(), status.Error(codes.Internal, err.Error())
	}

	// One worker translates segments in order and is the only sender.
	jobs := make(chan segmentJob, streamBacklog)
	var last *engine
	werr := make(chan error, 1)
	go func() {
		var err error
		for j := range jobs {
			if err != nil || ctx.Err() != nil {
				continue // drain
			}
			var e *engine
			e, err = s.streamSegment(ctx, stream, j, cfg, opt)
			if e != nil {
				last = e
			}
			if err != nil {
				cancel()
			}
		}
		werr <- err
	}()
	finish := func(err error) (*engine, error) {
		close(jobs)
		// A failed segment cancels ctx, so the reader's error is then
		// only its echo: the worker's error is the cause.
		if werr := <-werr; werr != nil {
			return last, werr
		}
		return last, err
	}
	index, samples := 0, 0
	maxSamples := int(lim.MaxStreamSeconds * float64(cfg.SampleRate))
	submit := func(segs []vad.Segment) error {
		for _, sg := range segs {
			select {
			case jobs <- segmentJob{index: index, seg: sg}:
				index++
			case <-ctx.Done():
				return toStatus(context.Cause(ctx))
			}
		}
		return nil
	}
	for {
		m, err := next()
		if errors.Is(err, io.EOF) {
			return finish(submit(seg.Flush()))
		}
		if err != nil {
			return finish(toStatus(err))
		}
		pcm := m.GetPcm()
		if m.GetConfig() != nil {
			return finish(invalid("config", "sent twice: only the first message carries a StreamConfig"))
		}
		if len(pcm)%2 != 0 {
			return finish(invalid("pcm", "chunk of %d bytes: PCM 16-bit samples take 2 bytes each", len(pcm)))
		}
		if int64(len(pcm)) > lim.MaxBytes {
			return finish(invalid("pcm", "chunk of %d bytes: limit %d bytes (MaxBytes)", len(pcm), lim.MaxBytes))
		}
		n := len(pcm) / 2
		if samples+n > maxSamples {
			return finish(invalid("pcm", "stream exceeds %g s of audio (limit MaxStreamSeconds); end the stream and start a new one", lim.MaxStreamSeconds))
		}
		samples += n
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(int16(binary.LittleEndian.Uint16(pcm[2*i:]))) / 32768
		}
		if err := submit(seg.Push(x)); err != nil {
			return finish(err)
		}
	}
}

// streamSegment translates one segment and sends its answer.
func (s *Server) streamSegment(ctx context.Context, stream babelfishv1.Translator_StreamTranslateServer, j segmentJob, cfg *babelfishv1.StreamConfig, opt model.DecodeOptions) (*engine, error) {
	rate := float64(cfg.SampleRate)
	clip := audio.Clip{Rate: int(cfg.SampleRate), Samples: j.seg.Samples}
	if clip.Seconds() < s.opt.limits.MinSeconds {
		return nil, nil // too short to translate: skip
	}
	out, e, info, err := s.run(ctx, request{in: model.Input{Audio: clip, TargetLang: cfg.TargetLanguage}, opt: opt}, cfg.SourceLanguage)
	if err != nil {
		return e, err
	}
	s.met.queue.WithLabelValues(e.name).Observe(info.Queue.Seconds())
	s.met.compute.WithLabelValues(e.name).Observe(info.Compute.Seconds())
	wav, err := audio.EncodeWAV(out.Audio, audio.PCM16)
	if err != nil {
		return e, status.Error(codes.Internal, err.Error())
	}
	return e, stream.Send(&babelfishv1.StreamTranslateResponse{
		Segment:           int32(j.index),
		InputStartSeconds: float64(j.seg.Start) / rate,
		InputEndSeconds:   float64(j.seg.End) / rate,
		Audio:             &babelfishv1.Audio{Wav: wav},
		OutputSampleRate:  int32(out.Audio.Rate),
		ModelVersion:      e.name,
	})
}

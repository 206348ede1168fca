// Package audio is Babelfish's audio DSP building block: reading and writing
// WAV, band-limited resampling, log-mel features for the speech encoder, and
// Griffin-Lim inversion of log-mel spectrograms back to a waveform.
//
// Audio lives in memory as a [Clip]: mono float32 samples, nominally in
// [-1, 1], at an integer sample rate. Every reader downmixes to mono.
//
// Bad input is reported, never a crash: [ReadWAV] and [DecodeWAV] check the
// header against the actual input and against caller-set [Limits], and every
// error they return for bad or oversized input matches [ErrMalformed],
// [ErrUnsupported] or [ErrLimit] (see [IsInvalidInput]), so a gRPC layer can
// answer INVALID_ARGUMENT. Memory use is bounded by the bytes actually read,
// whatever sizes a header declares.
//
// The pieces:
//
//   - WAV: [ReadWAV], [DecodeWAV], [WriteWAV], [EncodeWAV]; PCM 8/16/24/32-bit,
//     IEEE float 32/64-bit, WAVE_FORMAT_EXTENSIBLE, any channel count.
//   - Resampling: [Resampler] (streaming) and [Resample] (one shot), a Kaiser
//     windowed-sinc polyphase filter with the cutoff below the lower of the two
//     Nyquist frequencies.
//   - Features: [MelAnalyzer] computes log-mel spectrograms (Hann STFT with
//     a radix-2 real FFT (gonum's for other lengths), Slaney mel filterbank) as a row-major frames x mels
//     [Spectrogram], the layout the encoder consumes.
//   - Inversion: [MelAnalyzer.Invert] turns a log-mel spectrogram back into
//     speech (non-negative least squares to linear magnitude, then fast
//     Griffin-Lim), for baselines and debugging before a trained vocoder.
//   - Helpers: [Clip.Duration], [Peak], [Normalize], [RMS], [FrameRMS].
//
// On amd64 with AVX2 the hot loops (FFT, logarithms, windowing, the
// filterbank solve, Griffin-Lim's projection, PCM16 conversion) run as
// vector kernels in the *_amd64.s files. Each computes its Go form's
// values bit for bit: the same IEEE operations in the same order, no fused
// multiply-add, and the Go forms round every product on their own, so that
// a build whose compiler fuses (GOAMD64=v3, arm64) computes them alike.
// GODEBUG=cpu.avx2=off selects the Go forms; the tests compare the two.
package audio

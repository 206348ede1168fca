package audio

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the WAV reader returns for bad input wraps one
// of them; errors.Is tells which.
var (
	// ErrMalformed: the input is not a well-formed WAV file (bad magic,
	// truncated data, impossible header fields).
	ErrMalformed = errors.New("audio: malformed WAV")
	// ErrUnsupported: a well-formed WAV in an encoding this package does not
	// decode (A-law, ADPCM, RF64, 12-byte floats, ...).
	ErrUnsupported = errors.New("audio: unsupported WAV encoding")
	// ErrLimit: the input exceeds a caller-set [Limits] field. The concrete
	// error is a *[LimitError].
	ErrLimit = errors.New("audio: limit exceeded")
)

// IsInvalidInput reports whether err was caused by the input itself
// (malformed, unsupported or over a limit), as opposed to a failing reader:
// the errors a server answers with INVALID_ARGUMENT.
func IsInvalidInput(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrLimit)
}

// LimitError says which [Limits] field the input broke, the input's value
// and the limit. It matches [ErrLimit] under errors.Is.
type LimitError struct {
	// Field is the Limits field name: MaxBytes, MaxSeconds, MinRate,
	// MaxRate or MaxChannels.
	Field string
	// Value is the input's value (bytes, seconds, Hz or channels); for a
	// stream cut off at MaxBytes it is the number of bytes read so far.
	Value float64
	// Limit is the field's value.
	Limit float64
}

func (e *LimitError) Error() string {
	switch e.Field {
	case "MaxBytes":
		return fmt.Sprintf("audio: input size %.0f bytes exceeds limit %.0f bytes (MaxBytes)", e.Value, e.Limit)
	case "MaxSeconds":
		return fmt.Sprintf("audio: duration %.1f s exceeds limit %g s (MaxSeconds)", e.Value, e.Limit)
	case "MinRate":
		return fmt.Sprintf("audio: sample rate %.0f Hz is below limit %.0f Hz (MinRate)", e.Value, e.Limit)
	case "MaxRate":
		return fmt.Sprintf("audio: sample rate %.0f Hz exceeds limit %.0f Hz (MaxRate)", e.Value, e.Limit)
	case "MaxChannels":
		return fmt.Sprintf("audio: %.0f channels exceeds limit %.0f (MaxChannels)", e.Value, e.Limit)
	}
	return fmt.Sprintf("audio: %g exceeds limit %g (%s)", e.Value, e.Limit, e.Field)
}

// Is makes errors.Is(err, ErrLimit) true for a *LimitError.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar reports progress of work measured in units (utterances, steps, bytes).
// It is safe for concurrent use.
type Bar struct {
	w      io.Writer
	label  string
	unit   string
	total  int64
	tty    bool
	every  time.Duration
	now    func() time.Time
	mu     sync.Mutex
	done   int64
	start  time.Time
	last   time.Time
	closed bool
}

// Option configures a Bar.
type Option func(*Bar)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(b *Bar) { b.now = now } }

// WithInterval sets how often a non-terminal writer gets a line.
func WithInterval(d time.Duration) Option { return func(b *Bar) { b.every = d } }

// New starts a bar over total units written to w.
func New(w io.Writer, label, unit string, total int64, opts ...Option) *Bar {
	b := &Bar{w: w, label: label, unit: unit, total: total, every: 5 * time.Second, now: time.Now}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty, b.every = true, 200*time.Millisecond
		}
	}
	for _, o := range opts {
		o(b)
	}
	b.start = b.now()
	b.last = b.start
	return b
}

// Add records n more units done and redraws when due.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if t := b.now(); t.Sub(b.last) >= b.every {
		b.last = t
		b.draw(t, false)
	}
}

// Done draws the final line.
func (b *Bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.draw(b.now(), true)
	}
}

// Line renders the bar's current state (without drawing it).
func (b *Bar) Line() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.line(b.now())
}

func (b *Bar) line(t time.Time) string {
	el := t.Sub(b.start)
	rate := 0.0
	if el > 0 {
		rate = float64(b.done) / el.Seconds()
	}
	frac := 0.0
	if b.total > 0 {
		frac = min(float64(b.done)/float64(b.total), 1)
	}
	const width = 24
	fill := int(frac * width)
	eta := "?"
	if rate > 0 && b.total > 0 {
		eta = time.Duration(float64(b.total-b.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d %s %.1f %s/s elapsed %s ETA %s",
		b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100,
		b.done, b.total, b.unit, rate, b.unit, el.Round(time.Second), eta)
}

func (b *Bar) draw(t time.Time, final bool) {
	l := b.line(t)
	switch {
	case b.tty && final:
		fmt.Fprintf(b.w, "\r%s\n", l)
	case b.tty:
		fmt.Fprintf(b.w, "\r%s", l)
	default:
		fmt.Fprintln(b.w, l)
	}
}

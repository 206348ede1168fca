package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBar(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	var out bytes.Buffer
	b := New(&out, "build", "utt", 100, WithClock(clock), WithInterval(time.Second))
	tests := []struct {
		advance time.Duration
		add     int64
		want    []string
	}{
		{10 * time.Second, 25, []string{"25%", "25/100", "2.5 utt/s", "ETA 30s"}},
		{10 * time.Second, 25, []string{"50%", "50/100", "ETA 20s"}},
		{20 * time.Second, 50, []string{"100%", "100/100", "ETA 0s"}},
	}
	for _, tt := range tests {
		now = now.Add(tt.advance)
		b.Add(tt.add)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		last := lines[len(lines)-1]
		for _, w := range tt.want {
			if !strings.Contains(last, w) {
				t.Errorf("after %d: line %q lacks %q", tt.add, last, w)
			}
		}
	}
	b.Done()
	b.Done()
	if n := strings.Count(out.String(), "\n"); n != 4 {
		t.Errorf("%d lines written, want 3 updates and one final line:\n%s", n, out.String())
	}
}

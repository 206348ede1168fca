package nvml

import "testing"

// Memory figures are whole MiB rounded up, as nvidia-smi prints them; the
// last two rows are NVML's bytes and nvidia-smi's figures on an H100 under
// load (scripts/device-check.sh).
func TestToMiBMatchesNvidiaSMI(t *testing.T) {
	for _, c := range []struct {
		bytes uint64
		want  float64
	}{
		{0, 0},
		{1, 1},
		{mib, 1},
		{mib + 1, 2},
		{85520809984, 81559},
		{925696000, 883},
		{84091797504, 80197},
	} {
		if got := toMiB(c.bytes); got != c.want {
			t.Errorf("toMiB(%d) = %v, want %v", c.bytes, got, c.want)
		}
	}
}

package audio

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"
)

// On a CPU with AVX2 and FMA, and no GODEBUG switching features off, the
// start-up check must have found exps4 in step with math.Exp: otherwise
// the kernel has drifted from archExp and Exps quietly runs one at a
// time.
func TestVectorExpEnabled(t *testing.T) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || strings.Contains(os.Getenv("GODEBUG"), "cpu.") {
		t.Skip("no AVX2 and FMA here, or GODEBUG changes CPU features")
	}
	if !vectorExp {
		t.Fatal("exps4 disagrees with math.Exp on the start-up probe")
	}
}

// On a build that does not fuse math.Sincos's products (amd64 below v3)
// with AVX2, the start-up check must have found sincos4 in step.
func TestVectorSincosEnabled(t *testing.T) {
	if !cpu.X86.HasAVX2 || !unfusedFloat || strings.Contains(os.Getenv("GODEBUG"), "cpu.") {
		t.Skip("no AVX2 here, a fusing build, or GODEBUG changes CPU features")
	}
	if !vectorSincos {
		t.Fatal("sincos4 disagrees with math.Sincos on the start-up probe")
	}
}

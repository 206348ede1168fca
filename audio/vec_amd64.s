#include "textflag.h"

// Constants of math.Log's amd64 assembly (archLog), as bits.
DATA logc<>+0(SB)/8, $0x000FFFFFFFFFFFFF  // mantissa mask
DATA logc<>+8(SB)/8, $0x3FE0000000000000  // 0.5
DATA logc<>+16(SB)/8, $0x4330000000000000 // 2^52
DATA logc<>+24(SB)/8, $0x408FF00000000000 // 1022
DATA logc<>+32(SB)/8, $0x3FE6A09E667F3BCD // sqrt(2)/2
DATA logc<>+40(SB)/8, $0x3FF0000000000000 // 1
DATA logc<>+48(SB)/8, $0x4000000000000000 // 2
DATA logc<>+56(SB)/8, $0x3FE5555555555593 // L1
DATA logc<>+64(SB)/8, $0x3FD999999997FA04 // L2
DATA logc<>+72(SB)/8, $0x3FD2492494229359 // L3
DATA logc<>+80(SB)/8, $0x3FCC71C51D8E78AF // L4
DATA logc<>+88(SB)/8, $0x3FC7466496CB03DE // L5
DATA logc<>+96(SB)/8, $0x3FC39A09D078C69F // L6
DATA logc<>+104(SB)/8, $0x3FC2F112DF3E5244 // L7
DATA logc<>+112(SB)/8, $0x3FE62E42FEE00000 // Ln2Hi
DATA logc<>+120(SB)/8, $0x3DEA39EF35793C76 // Ln2Lo
GLOBL logc<>(SB), RODATA|NOPTR, $128

// func logs4(x *float64, n int)
//
// x[i] = math.Log(x[i]) for n (a multiple of 4, at least 4) positive,
// normal, finite values, four at a time. Each lane runs archLog's
// operations in archLog's order (frexp from the bits; f1 <= sqrt(2)/2
// doubles f1 and lowers k; the same polynomial), one IEEE operation per
// step and no FMA, so the results are math.Log's to the bit.
TEXT ·logs4(SB), NOSPLIT, $0-16
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VBROADCASTSD logc<>+0(SB), Y15
	VBROADCASTSD logc<>+8(SB), Y14
	VBROADCASTSD logc<>+16(SB), Y13
	VBROADCASTSD logc<>+24(SB), Y12
	VBROADCASTSD logc<>+32(SB), Y11
	VBROADCASTSD logc<>+40(SB), Y10
	VBROADCASTSD logc<>+48(SB), Y9

loop:
	VMOVUPD (DI), Y0

	// f1, k := frexp(x)
	VANDPD Y15, Y0, Y2
	VORPD  Y14, Y2, Y2
	VPSRLQ $52, Y0, Y1
	VPOR   Y13, Y1, Y1
	VSUBPD Y13, Y1, Y1
	VSUBPD Y12, Y1, Y1

	// if f1 <= sqrt(2)/2 { k -= 1; f1 *= 2 }
	VCMPPD $2, Y11, Y2, Y3
	VANDPD Y10, Y3, Y3
	VSUBPD Y3, Y1, Y1
	VADDPD Y10, Y3, Y3
	VMULPD Y3, Y2, Y2

	// f := f1 - 1; s := f / (2 + f); s2, s4
	VSUBPD Y10, Y2, Y2
	VADDPD Y2, Y9, Y0
	VDIVPD Y0, Y2, Y3
	VMULPD Y3, Y3, Y4
	VMULPD Y4, Y4, Y5

	// t1 := s2 * (L1 + s4*(L3+s4*(L5+s4*L7)))
	VBROADCASTSD logc<>+104(SB), Y6
	VMULPD       Y5, Y6, Y6
	VBROADCASTSD logc<>+88(SB), Y7
	VADDPD       Y7, Y6, Y6
	VMULPD       Y5, Y6, Y6
	VBROADCASTSD logc<>+72(SB), Y7
	VADDPD       Y7, Y6, Y6
	VMULPD       Y5, Y6, Y6
	VBROADCASTSD logc<>+56(SB), Y7
	VADDPD       Y7, Y6, Y6
	VMULPD       Y6, Y4, Y4

	// t2 := s4 * (L2 + s4*(L4+s4*L6))
	VBROADCASTSD logc<>+96(SB), Y6
	VMULPD       Y5, Y6, Y6
	VBROADCASTSD logc<>+80(SB), Y7
	VADDPD       Y7, Y6, Y6
	VMULPD       Y5, Y6, Y6
	VBROADCASTSD logc<>+64(SB), Y7
	VADDPD       Y7, Y6, Y6
	VMULPD       Y6, Y5, Y5

	// R := t1 + t2; hfsq := 0.5 * f * f
	VADDPD Y5, Y4, Y4
	VMULPD Y2, Y14, Y0
	VMULPD Y2, Y0, Y0

	// k*Ln2Hi - ((hfsq - (s*(R+hfsq) + k*Ln2Lo)) - f)
	VADDPD       Y0, Y4, Y4
	VMULPD       Y4, Y3, Y3
	VBROADCASTSD logc<>+120(SB), Y6
	VMULPD       Y1, Y6, Y6
	VADDPD       Y6, Y3, Y3
	VSUBPD       Y3, Y0, Y0
	VSUBPD       Y2, Y0, Y0
	VBROADCASTSD logc<>+112(SB), Y6
	VMULPD       Y6, Y1, Y1
	VSUBPD       Y0, Y1, Y1

	VMOVUPD Y1, (DI)
	ADDQ    $32, DI
	SUBQ    $4, CX
	JNZ     loop
	VZEROUPPER
	RET

// func window4(dst *float64, x *float32, w *float64, n int)
//
// dst[i] = float64(x[i]) * w[i] for n (a multiple of 4, at least 4)
// values, four at a time.
TEXT ·window4(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX

wloop:
	VCVTPS2PD (SI), Y0
	VMULPD    (DX), Y0, Y0
	VMOVUPD   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DX
	ADDQ      $32, DI
	SUBQ      $4, CX
	JNZ       wloop
	VZEROUPPER
	RET

// func overlapAdd4(out, frame, w *float64, n int, scale float64)
//
// out[i] += frame[i] * scale * w[i] for n (a multiple of 4, at least 4)
// values: the product rounded, then the second, then the sum, as Go does.
TEXT ·overlapAdd4(SB), NOSPLIT, $0-40
	MOVQ         out+0(FP), DI
	MOVQ         frame+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSD scale+32(FP), Y15
	XORQ         AX, AX

olaloop:
	VMOVUPD (SI)(AX*8), Y0
	VMULPD  Y15, Y0, Y0
	VMULPD  (DX)(AX*8), Y0, Y0
	VADDPD  (DI)(AX*8), Y0, Y0
	VMOVUPD Y0, (DI)(AX*8)
	ADDQ    $4, AX
	CMPQ    AX, CX
	JLT     olaloop
	VZEROUPPER
	RET

// func mulTo4(dst, x, w *float64, n int)
//
// dst[i] = x[i] * w[i] for n (a multiple of 4, at least 4) values.
TEXT ·mulTo4(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ AX, AX

mulloop:
	VMOVUPD (SI)(AX*8), Y0
	VMULPD  (DX)(AX*8), Y0, Y0
	VMOVUPD Y0, (DI)(AX*8)
	ADDQ    $4, AX
	CMPQ    AX, CX
	JLT     mulloop
	VZEROUPPER
	RET

DATA pcmc<>+0(SB)/4, $0x38000000 // 2^-15 (float32)
DATA pcmc<>+8(SB)/8, $0x40E0000000000000 // 32768
DATA pcmc<>+16(SB)/8, $0x40DFFFC000000000 // 32767
DATA pcmc<>+24(SB)/8, $0xC0E0000000000000 // -32768
DATA pcmc<>+32(SB)/8, $0x3FE0000000000000 // 0.5
DATA pcmc<>+40(SB)/8, $0x8000000000000000 // sign
GLOBL pcmc<>(SB), RODATA|NOPTR, $48

// func pcm16ToFloat8(out *float32, b *byte, n int)
//
// out[i] = int16 at b[2i] * 2^-15 for n (a multiple of 8, at least 8)
// samples: the conversion and the scaling are exact, as in Go.
TEXT ·pcm16ToFloat8(SB), NOSPLIT, $0-24
	MOVQ         out+0(FP), DI
	MOVQ         b+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS pcmc<>+0(SB), Y15
	XORQ         AX, AX

p2floop:
	VPMOVSXWD (SI)(AX*2), Y0
	VCVTDQ2PS Y0, Y0
	VMULPS    Y15, Y0, Y0
	VMOVUPS   Y0, (DI)(AX*4)
	ADDQ      $8, AX
	CMPQ      AX, CX
	JLT       p2floop
	VZEROUPPER
	RET

// func floatToPCM16x4(out *byte, x *float32, n int)
//
// ToPCM16(x[i]) little-endian at out[2i] for n (a multiple of 4, at least
// 4) samples, in ToPCM16's steps: s = x * 32768 in float64 (exact); NaN
// becomes 0; clamped to [-32768, 32767]; s + copysign(0.5, s) (exact)
// truncated. Every value is in int16's range, so the saturating pack
// changes none.
TEXT ·floatToPCM16x4(SB), NOSPLIT, $0-24
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSD pcmc<>+8(SB), Y15
	VBROADCASTSD pcmc<>+16(SB), Y14
	VBROADCASTSD pcmc<>+24(SB), Y13
	VBROADCASTSD pcmc<>+32(SB), Y12
	VBROADCASTSD pcmc<>+40(SB), Y11
	XORQ         AX, AX

f2ploop:
	VCVTPS2PD  (SI)(AX*4), Y0
	VMULPD     Y15, Y0, Y0
	VCMPPD     $3, Y0, Y0, Y1     // unordered: NaN
	VANDNPD    Y0, Y1, Y0         // NaN -> +0
	VMINPD     Y14, Y0, Y0
	VMAXPD     Y13, Y0, Y0
	VANDPD     Y11, Y0, Y1        // sign of s
	VORPD      Y12, Y1, Y1        // copysign(0.5, s)
	VADDPD     Y1, Y0, Y0
	VCVTTPD2DQY Y0, X0
	VPACKSSDW  X0, X0, X0
	VMOVQ      X0, (DI)(AX*2)
	ADDQ       $4, AX
	CMPQ       AX, CX
	JLT        f2ploop
	VZEROUPPER
	RET

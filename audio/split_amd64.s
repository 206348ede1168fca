#include "textflag.h"

// Sign masks: the imaginary parts of two complex128, their real parts, all.
DATA splitc<>+0(SB)/8, $0
DATA splitc<>+8(SB)/8, $0x8000000000000000
DATA splitc<>+16(SB)/8, $0
DATA splitc<>+24(SB)/8, $0x8000000000000000
DATA splitc<>+32(SB)/8, $0x8000000000000000
DATA splitc<>+40(SB)/8, $0
DATA splitc<>+48(SB)/8, $0x8000000000000000
DATA splitc<>+56(SB)/8, $0
DATA splitc<>+64(SB)/8, $0x3FE0000000000000 // 0.5
DATA splitc<>+72(SB)/8, $0xBFE0000000000000 // -0.5
DATA splitc<>+80(SB)/8, $0x8000000000000000
GLOBL splitc<>(SB), RODATA|NOPTR, $88

// func split2(dst, z, tw *complex128, h int)
//
// splitGo for bins k and k+1 at a time (h a power of two, at least 4): the
// same products, sums and sign flips per value, one IEEE operation each.
// A complex product x*y is [xr*yr, xr*yi] VADDSUBPD [xi*yi, xi*yr]; the
// mirror bins are loaded and stored with their halves swapped.
TEXT ·split2(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         z+8(FP), SI
	MOVQ         tw+16(FP), DX
	MOVQ         h+24(FP), CX
	VMOVUPD      splitc<>+0(SB), Y14      // conj
	VBROADCASTSD splitc<>+80(SB), Y15     // negate
	VBROADCASTSD splitc<>+64(SB), Y12     // 0.5
	VBROADCASTSD splitc<>+72(SB), Y11     // -0.5
	VXORPD       Y13, Y13, Y13
	MOVQ         CX, R9
	SHRQ         $1, R9                    // h/2
	MOVQ         $1, AX

sploop:
	MOVQ      AX, BX
	SHLQ      $4, BX
	MOVQ      CX, R8
	SUBQ      AX, R8
	DECQ      R8
	SHLQ      $4, R8                       // (h-k-1)*16
	VMOVUPD   (SI)(BX*1), Y0               // a
	VMOVUPD   (SI)(R8*1), Y1
	VPERMPD   $0x4E, Y1, Y1                // b
	VXORPD    Y14, Y1, Y1                  // conj(b)
	VADDPD    Y1, Y0, Y2                   // s = a + conj(b)
	VSUBPD    Y1, Y0, Y3                   // d = a - conj(b)
	VMULPD    Y12, Y2, Y4
	VMULPD    Y13, Y2, Y5
	VPERMILPD $5, Y5, Y5
	VADDSUBPD Y5, Y4, Y4                   // e = s * 0.5
	VMULPD    Y13, Y3, Y5
	VPERMILPD $5, Y3, Y6
	VMULPD    Y11, Y6, Y6
	VADDSUBPD Y6, Y5, Y5                   // o = d * -0.5i
	VMOVUPD   (DX)(BX*1), Y6               // w
	VMOVDDUP  Y6, Y7                       // wr wr
	VPERMILPD $0xF, Y6, Y8                 // wi wi
	VMULPD    Y5, Y7, Y9
	VPERMILPD $5, Y5, Y10
	VMULPD    Y10, Y8, Y10
	VADDSUBPD Y10, Y9, Y9                  // w * o
	VADDPD    Y9, Y4, Y9
	VMOVUPD   Y9, (DI)(BX*1)               // dst[k] = e + w o
	VXORPD    Y14, Y5, Y0                  // conj(o)
	VXORPD    Y15, Y7, Y1                  // -wr -wr
	VMULPD    Y0, Y1, Y1
	VPERMILPD $5, Y0, Y0
	VMULPD    Y0, Y8, Y0
	VADDSUBPD Y0, Y1, Y1                   // (-wr + i wi) conj(o)
	VXORPD    Y14, Y4, Y2                  // conj(e)
	VADDPD    Y1, Y2, Y2
	VPERMPD   $0x4E, Y2, Y2
	VMOVUPD   Y2, (DI)(R8*1)               // dst[h-k] = conj(e) + ...
	ADDQ      $2, AX
	CMPQ      AX, R9
	JLE       sploop
	VZEROUPPER
	RET

// func unsplit2(z, coeff, tw *complex128, rev *int32, h int)
//
// unsplitGo for bins k and k+1 at a time (h a power of two, at least 4),
// one IEEE operation per value as there; each result is stored alone at
// its bit-reversed place, and the mirror of k = h/2 (itself) is skipped.
TEXT ·unsplit2(SB), NOSPLIT, $0-40
	MOVQ         z+0(FP), DI
	MOVQ         coeff+8(FP), SI
	MOVQ         tw+16(FP), DX
	MOVQ         rev+24(FP), R11
	MOVQ         h+32(FP), CX
	VMOVUPD      splitc<>+0(SB), Y14      // conj
	VMOVUPD      splitc<>+32(SB), Y15     // negate the real parts
	MOVQ         CX, R9
	SHRQ         $1, R9                    // h/2
	MOVQ         $1, AX

usloop:
	MOVQ       AX, BX
	SHLQ       $4, BX
	MOVQ       CX, R8
	SUBQ       AX, R8
	DECQ       R8                          // h-k-1
	MOVQ       R8, R12
	SHLQ       $4, R12
	VMOVUPD    (SI)(BX*1), Y0              // a
	VMOVUPD    (SI)(R12*1), Y1
	VPERMPD    $0x4E, Y1, Y1               // b
	VXORPD     Y14, Y1, Y1                 // conj(b)
	VADDPD     Y1, Y0, Y2                  // e
	VSUBPD     Y1, Y0, Y3                  // d
	VMOVUPD    (DX)(BX*1), Y4
	VXORPD     Y14, Y4, Y4                 // conj(w)
	VMOVDDUP   Y3, Y5                      // dr dr
	VPERMILPD  $0xF, Y3, Y6                // di di
	VMULPD     Y4, Y5, Y5
	VPERMILPD  $5, Y4, Y4
	VMULPD     Y4, Y6, Y6
	VADDSUBPD  Y6, Y5, Y5                  // o = d conj(w)
	VPERMILPD  $5, Y5, Y6                  // oi or
	VXORPD     Y15, Y6, Y7                 // -oi or
	VADDPD     Y7, Y2, Y7                  // e + i o
	VXORPD     Y14, Y7, Y7                 // conjugated
	VXORPD     Y14, Y2, Y8                 // conj(e)
	VADDPD     Y6, Y8, Y8                  // conj(e) + i conj(o)
	VXORPD     Y14, Y8, Y8
	MOVL       (R11)(AX*4), R10
	SHLQ       $4, R10
	VMOVUPD    X7, (DI)(R10*1)             // z[rev[k]]
	MOVL       4(R11)(AX*4), R10
	SHLQ       $4, R10
	VEXTRACTF128 $1, Y7, X9
	VMOVUPD    X9, (DI)(R10*1)             // z[rev[k+1]]
	MOVL       4(R11)(R8*4), R10
	SHLQ       $4, R10
	VMOVUPD    X8, (DI)(R10*1)             // z[rev[h-k]]
	LEAQ       1(AX), R10
	CMPQ       R10, R9
	JEQ        usnext                      // k+1 = h/2 is its own mirror
	MOVL       (R11)(R8*4), R10
	SHLQ       $4, R10
	VEXTRACTF128 $1, Y8, X9
	VMOVUPD    X9, (DI)(R10*1)             // z[rev[h-k-1]]

usnext:
	ADDQ $2, AX
	CMPQ AX, R9
	JLE  usloop
	VZEROUPPER
	RET

// func conj4(dst *float64, z *complex128, n int)
//
// dst[2j], dst[2j+1] = real(z[j]), -imag(z[j]) for n values (n even,
// at least 2): a sign flip, exact.
TEXT ·conj4(SB), NOSPLIT, $0-24
	MOVQ    dst+0(FP), DI
	MOVQ    z+8(FP), SI
	MOVQ    n+16(FP), CX
	SHLQ    $4, CX
	VMOVUPD splitc<>+0(SB), Y14
	XORQ    AX, AX

cjloop:
	VMOVUPD (SI)(AX*1), Y0
	VXORPD  Y14, Y0, Y0
	VMOVUPD Y0, (DI)(AX*1)
	ADDQ    $32, AX
	CMPQ    AX, CX
	JLT     cjloop
	VZEROUPPER
	RET

DATA f2sign<>+0(SB)/8, $0
DATA f2sign<>+8(SB)/8, $0
DATA f2sign<>+16(SB)/8, $0
DATA f2sign<>+24(SB)/8, $0x8000000000000000
GLOBL f2sign<>(SB), RODATA|NOPTR, $32

// FIRST2 runs the first two stages on a group of four, q0 q2 in Y0 and
// q1 q3 in Y1 (Y15 the sign of the last value), leaving q0' q1' in Y4
// and q2' q3' in Y5: a c = q0+q1 q2+q3, b d = q0-q1 q2-q3, d = -i d, then
// a+c b+d and a-c b-d, the same sums as first2Go.
#define FIRST2 \
	VADDPD     Y1, Y0, Y2; \
	VSUBPD     Y1, Y0, Y3; \
	VPERMILPD  $6, Y3, Y3; \
	VXORPD     Y15, Y3, Y3; \
	VPERM2F128 $0x20, Y3, Y2, Y4; \
	VPERM2F128 $0x31, Y3, Y2, Y5; \
	VADDPD     Y5, Y4, Y6; \
	VSUBPD     Y5, Y4, Y5; \
	VMOVAPD    Y6, Y4

// func first2x4(z *complex128, n int)
//
// first2Go for n (a multiple of 4, at least 4) values.
TEXT ·first2x4(SB), NOSPLIT, $0-16
	MOVQ    z+0(FP), DI
	MOVQ    n+8(FP), CX
	SHLQ    $4, CX
	VMOVUPD f2sign<>+0(SB), Y15
	XORQ    AX, AX

f2loop:
	VMOVUPD      (DI)(AX*1), X0
	VINSERTF128  $1, 32(DI)(AX*1), Y0, Y0   // q0 q2
	VMOVUPD      16(DI)(AX*1), X1
	VINSERTF128  $1, 48(DI)(AX*1), Y1, Y1   // q1 q3
	FIRST2
	VMOVUPD      Y4, (DI)(AX*1)
	VMOVUPD      Y5, 32(DI)(AX*1)
	ADDQ         $64, AX
	CMPQ         AX, CX
	JLT          f2loop
	VZEROUPPER
	RET

// func gatherFirst2x4(z *complex128, seq *float64, rev *int32, h int)
//
// gatherGo then first2Go for h (a multiple of 4, at least 4) values:
// z[s+m] is the pair of samples at rev[s+m], since rev is its own inverse.
TEXT ·gatherFirst2x4(SB), NOSPLIT, $0-32
	MOVQ    z+0(FP), DI
	MOVQ    seq+8(FP), SI
	MOVQ    rev+16(FP), DX
	MOVQ    h+24(FP), CX
	VMOVUPD f2sign<>+0(SB), Y15
	XORQ    AX, AX

gfloop:
	MOVL         (DX)(AX*4), R8
	SHLQ         $4, R8
	VMOVUPD      (SI)(R8*1), X0
	MOVL         8(DX)(AX*4), R8
	SHLQ         $4, R8
	VINSERTF128  $1, (SI)(R8*1), Y0, Y0    // q0 q2
	MOVL         4(DX)(AX*4), R8
	SHLQ         $4, R8
	VMOVUPD      (SI)(R8*1), X1
	MOVL         12(DX)(AX*4), R8
	SHLQ         $4, R8
	VINSERTF128  $1, (SI)(R8*1), Y1, Y1    // q1 q3
	FIRST2
	MOVQ         AX, R9
	SHLQ         $4, R9
	VMOVUPD      Y4, (DI)(R9*1)
	VMOVUPD      Y5, 32(DI)(R9*1)
	ADDQ         $4, AX
	CMPQ         AX, CX
	JLT          gfloop
	VZEROUPPER
	RET

#include "textflag.h"

DATA nnlseps<>+0(SB)/8, $0x39b4484bfeebc2a0 // 1e-30
GLOBL nnlseps<>(SB), RODATA|NOPTR, $8

// func nnls4(s, num, den, bs *float64, start, off *int, w *float64, mels, bins, iters int)
//
// nnlsLanesGo for four interleaved lanes (bins x 4 values at s, num and
// den, mels x 4 at bs) and iters >= 1. Each lane gets the scalar loop's
// operations in its order: one VMULPD and one VADDPD per filterbank
// weight (no FMA), then the quotient, the product and a zero where
// num <= 0, so every lane's values are the scalar solution's to the bit.
TEXT ·nnls4(SB), NOSPLIT, $0-80
	MOVQ         s+0(FP), DI
	MOVQ         num+8(FP), SI
	MOVQ         den+16(FP), DX
	MOVQ         bs+24(FP), R8
	MOVQ         start+32(FP), R9
	MOVQ         off+40(FP), R10
	MOVQ         w+48(FP), R11
	MOVQ         mels+56(FP), R12
	MOVQ         bins+64(FP), R13
	VBROADCASTSD nnlseps<>+0(SB), Y15
	VXORPD       Y14, Y14, Y14

iter:
	// bs = B s: for each band, the sum of its weights times s's bins.
	XORQ AX, AX

apply:
	MOVQ   (R9)(AX*8), BX
	SHLQ   $5, BX
	ADDQ   DI, BX
	MOVQ   (R10)(AX*8), R14
	MOVQ   8(R10)(AX*8), CX
	VXORPD Y0, Y0, Y0
	CMPQ   R14, CX
	JGE    applied

applyw:
	VBROADCASTSD (R11)(R14*8), Y1
	VMULPD       (BX), Y1, Y1
	VADDPD       Y1, Y0, Y0
	ADDQ         $32, BX
	INCQ         R14
	CMPQ         R14, CX
	JLT          applyw

applied:
	MOVQ    AX, BX
	SHLQ    $5, BX
	VMOVUPD Y0, (R8)(BX*1)
	INCQ    AX
	CMPQ    AX, R12
	JLT     apply

	// den = B^T bs, band by band into a cleared den.
	MOVQ R13, CX
	SHLQ $5, CX
	XORQ AX, AX

zero:
	VMOVUPD Y14, (DX)(AX*1)
	ADDQ    $32, AX
	CMPQ    AX, CX
	JLT     zero
	XORQ    AX, AX

trans:
	MOVQ    AX, BX
	SHLQ    $5, BX
	VMOVUPD (R8)(BX*1), Y0
	MOVQ    (R9)(AX*8), BX
	SHLQ    $5, BX
	ADDQ    DX, BX
	MOVQ    (R10)(AX*8), R14
	MOVQ    8(R10)(AX*8), CX
	CMPQ    R14, CX
	JGE     transd

transw:
	VBROADCASTSD (R11)(R14*8), Y1
	VMULPD       Y0, Y1, Y1
	VADDPD       (BX), Y1, Y1
	VMOVUPD      Y1, (BX)
	ADDQ         $32, BX
	INCQ         R14
	CMPQ         R14, CX
	JLT          transw

transd:
	INCQ AX
	CMPQ AX, R12
	JLT  trans

	// s = num <= 0 ? 0 : s * (num / (den + 1e-30))
	MOVQ R13, CX
	SHLQ $5, CX
	XORQ AX, AX

update:
	VMOVUPD (SI)(AX*1), Y0
	VADDPD  (DX)(AX*1), Y15, Y1
	VDIVPD  Y1, Y0, Y2
	VMULPD  (DI)(AX*1), Y2, Y2
	VCMPPD  $2, Y14, Y0, Y3
	VANDNPD Y2, Y3, Y2
	VMOVUPD Y2, (DI)(AX*1)
	ADDQ    $32, AX
	CMPQ    AX, CX
	JLT     update

	DECQ iters+72(FP)
	JNZ  iter
	VZEROUPPER
	RET

DATA glthr<>+0(SB)/8, $0x3d719799812dea11 // 1e-12
GLOBL glthr<>(SB), RODATA|NOPTR, $8

// func glProject4(c, tPrev, z *complex128, mag *float32, n int, momentum float64)
//
// glProjectGo for n bins, n a multiple of 4 and at least 4, four bins at
// a time: one square root and one division for the four (their r and
// m/r), then two bins per vector for the rest. Every value is one IEEE
// operation of glProjectGo's: VHADDPD adds im^2 to re^2 (the same sum),
// VADDSUBPD forms re*q - im*0 beside im*q + re*0, and a bin whose r is
// not above 1e-12 (or is NaN) takes (m, 0).
TEXT ·glProject4(SB), NOSPLIT, $0-48
	MOVQ         c+0(FP), DI
	MOVQ         tPrev+8(FP), SI
	MOVQ         z+16(FP), DX
	MOVQ         mag+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSD momentum+40(FP), Y15
	VBROADCASTSD glthr<>+0(SB), Y14
	VXORPD       Y13, Y13, Y13
	XORQ         AX, AX

glloop:
	MOVQ      AX, BX
	SHLQ      $4, BX
	VMOVUPD   (DX)(BX*1), Y0     // re0 im0 re1 im1
	VMOVUPD   32(DX)(BX*1), Y1   // re2 im2 re3 im3
	VMULPD    Y0, Y0, Y2
	VMULPD    Y1, Y1, Y3
	VHADDPD   Y3, Y2, Y2         // r0^2 r2^2 r1^2 r3^2
	VSQRTPD   Y2, Y2
	VPERMPD   $0xD8, Y2, Y2      // r0 r1 r2 r3
	VCVTPS2PD (R8)(AX*4), Y3     // m0 m1 m2 m3
	VDIVPD    Y2, Y3, Y4         // q = m / r
	VCMPPD    $0x0E, Y14, Y2, Y5 // r > 1e-12

	// bins 0 and 1
	VPERMPD   $0x50, Y4, Y6
	VPERMPD   $0x50, Y5, Y7
	VPERMPD   $0x50, Y3, Y8
	VBLENDPD  $0xA, Y13, Y8, Y8  // m 0 m 0
	VMULPD    Y6, Y0, Y9         // re*q im*q
	VMULPD    Y13, Y0, Y10       // re*0 im*0
	VPERMILPD $0x5, Y10, Y10
	VADDSUBPD Y10, Y9, Y9        // re*q - im*0, im*q + re*0
	VBLENDVPD Y7, Y9, Y8, Y9     // t
	VMOVUPD   (SI)(BX*1), Y10
	VSUBPD    Y10, Y9, Y10       // d = t - tPrev
	VMULPD    Y15, Y10, Y11
	VMULPD    Y13, Y10, Y12
	VPERMILPD $0x5, Y12, Y12
	VADDSUBPD Y12, Y11, Y11      // mom*dr - 0*di, mom*di + 0*dr
	VADDPD    Y11, Y9, Y11
	VMOVUPD   Y11, (DI)(BX*1)
	VMOVUPD   Y9, (SI)(BX*1)

	// bins 2 and 3
	VPERMPD   $0xFA, Y4, Y6
	VPERMPD   $0xFA, Y5, Y7
	VPERMPD   $0xFA, Y3, Y8
	VBLENDPD  $0xA, Y13, Y8, Y8
	VMULPD    Y6, Y1, Y9
	VMULPD    Y13, Y1, Y10
	VPERMILPD $0x5, Y10, Y10
	VADDSUBPD Y10, Y9, Y9
	VBLENDVPD Y7, Y9, Y8, Y9
	VMOVUPD   32(SI)(BX*1), Y10
	VSUBPD    Y10, Y9, Y10
	VMULPD    Y15, Y10, Y11
	VMULPD    Y13, Y10, Y12
	VPERMILPD $0x5, Y12, Y12
	VADDSUBPD Y12, Y11, Y11
	VADDPD    Y11, Y9, Y11
	VMOVUPD   Y11, 32(DI)(BX*1)
	VMOVUPD   Y9, 32(SI)(BX*1)
	ADDQ      $4, AX
	CMPQ      AX, CX
	JLT       glloop
	VZEROUPPER
	RET

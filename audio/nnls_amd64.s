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

#include "textflag.h"

// func fftStage(z *complex128, h int, half int, tw *complex128)
//
// One decimation-in-time stage over z (h values): for each block of
// 2*half values and each k < half, b = hi[k]*tw[k], then lo[k] = lo[k]+b
// and hi[k] = lo[k]-b, two k at a time in one YMM register each. The
// complex product is Go's: real = hr*wr - hi*wi, imag = hr*wi + hi*wr,
// each product and sum rounded on its own (no FMA), so the result is the
// scalar loop's bit for bit. half is even and at least 2; tw holds the
// stage's half twiddles contiguously.
TEXT ·fftStage(SB), NOSPLIT, $0-32
	MOVQ z+0(FP), DI
	MOVQ h+8(FP), CX
	MOVQ half+16(FP), DX
	MOVQ tw+24(FP), SI
	SHLQ $4, DX          // half, in bytes
	SHLQ $4, CX          // h, in bytes
	LEAQ (DI)(CX*1), R8  // end of z

block:
	LEAQ (DI)(DX*1), R9 // hi
	XORQ AX, AX

pair:
	VMOVUPD   (DI)(AX*1), Y0  // lo[k], lo[k+1]
	VMOVUPD   (R9)(AX*1), Y1  // hi[k], hi[k+1]
	VMOVUPD   (SI)(AX*1), Y2  // w[k], w[k+1]
	VMOVDDUP  Y2, Y3          // wr wr
	VPERMILPD $15, Y2, Y4     // wi wi
	VPERMILPD $5, Y1, Y5      // hi hr
	VMULPD    Y3, Y1, Y6      // hr*wr, hi*wr
	VMULPD    Y4, Y5, Y7      // hi*wi, hr*wi
	VADDSUBPD Y7, Y6, Y8      // hr*wr - hi*wi, hi*wr + hr*wi
	VADDPD    Y8, Y0, Y9
	VSUBPD    Y8, Y0, Y10
	VMOVUPD   Y9, (DI)(AX*1)
	VMOVUPD   Y10, (R9)(AX*1)
	ADDQ      $32, AX
	CMPQ      AX, DX
	JLT       pair

	LEAQ (DI)(DX*2), DI
	CMPQ DI, R8
	JLT  block
	VZEROUPPER
	RET

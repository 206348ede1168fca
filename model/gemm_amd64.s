#include "textflag.h"

// Register-blocked kernels for linearRows: one row of X times a block of
// 64, 8 or 4 columns of W, added onto that row of Y (which holds the
// bias). For each output the terms go in the order of idx, one VMULPS and
// one VADDPS each, so every element is rounded exactly as
// y += float32(x*w) in that order. The accumulators stay in registers for
// the whole of idx, so the only memory traffic is the weights.
//
// All take (y *float32, ldy int, x *float32, ldx int, w *float32, ldw int,
// idx *int32, n int): y and w point at the block's first column, the
// strides are in elements (ldy and ldx are unused), idx lists n >= 1
// input indices.

#define ARGS \
	MOVQ y+0(FP), DI; \
	MOVQ ldy+8(FP), R8; \
	SHLQ $2, R8; \
	MOVQ x+16(FP), SI; \
	MOVQ ldx+24(FP), R9; \
	SHLQ $2, R9; \
	MOVQ w+32(FP), DX; \
	MOVQ ldw+40(FP), R10; \
	SHLQ $2, R10; \
	MOVQ idx+48(FP), BX; \
	MOVQ n+56(FP), CX

// NEXT loads the next index into AX and points R13 at its weight row.
#define NEXT \
	MOVLQSX (BX), AX; \
	MOVQ AX, R13; \
	IMULQ R10, R13; \
	ADDQ DX, R13

// MAC adds bcast*W(off) to acc, through tmp.
#define MAC(off, bcast, tmp, acc) \
	VMULPS off(R13), bcast, tmp; \
	VADDPS tmp, acc, acc

// MACR adds bcast*wreg to acc, through tmp.
#define MACR(wreg, bcast, tmp, acc) \
	VMULPS wreg, bcast, tmp; \
	VADDPS tmp, acc, acc

// func kern1x64(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
TEXT ·kern1x64(SB), NOSPLIT, $0-64
	ARGS
	VMOVUPS 0(DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VMOVUPS 128(DI), Y4
	VMOVUPS 160(DI), Y5
	VMOVUPS 192(DI), Y6
	VMOVUPS 224(DI), Y7

loop1x64:
	NEXT
	VBROADCASTSS (SI)(AX*4), Y8
	MAC(0, Y8, Y9, Y0)
	MAC(32, Y8, Y10, Y1)
	MAC(64, Y8, Y11, Y2)
	MAC(96, Y8, Y12, Y3)
	MAC(128, Y8, Y9, Y4)
	MAC(160, Y8, Y10, Y5)
	MAC(192, Y8, Y11, Y6)
	MAC(224, Y8, Y12, Y7)
	ADDQ $4, BX
	DECQ CX
	JNZ  loop1x64

	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	VZEROUPPER
	RET

// func kern1x8(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
TEXT ·kern1x8(SB), NOSPLIT, $0-64
	ARGS
	VMOVUPS 0(DI), Y0

loop1x8:
	NEXT
	VBROADCASTSS (SI)(AX*4), Y8
	MAC(0, Y8, Y9, Y0)
	ADDQ $4, BX
	DECQ CX
	JNZ  loop1x8

	VMOVUPS Y0, 0(DI)
	VZEROUPPER
	RET

// func kern1x4(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
TEXT ·kern1x4(SB), NOSPLIT, $0-64
	ARGS
	VMOVUPS 0(DI), X0

loop1x4:
	NEXT
	VBROADCASTSS (SI)(AX*4), X8
	VMULPS       0(R13), X8, X9
	VADDPS       X9, X0, X0
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop1x4

	VMOVUPS X0, 0(DI)
	RET

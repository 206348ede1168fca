#include "textflag.h"

// Register-blocked kernels for linearRows: rows R of X times a block of
// columns of W, added onto Y (which holds the bias). For each output the
// terms go in the order of idx, one VMULPS and one VADDPS each, so every
// element is rounded exactly as y += float32(x*w) in that order. The
// accumulators stay in registers for the whole of idx, and each weight
// vector loaded serves all R rows: that reuse is what batching buys.
//
// All take (y *float32, ldy int, x *float32, ldx int, w *float32, ldw int,
// idx *int32, n int): y and w point at the block's first column, the
// strides are in elements, idx lists n >= 1 input indices.

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

// func kern2x32(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
TEXT ·kern2x32(SB), NOSPLIT, $0-64
	ARGS
	LEAQ    (DI)(R8*1), R12
	LEAQ    (SI)(R9*1), R11
	VMOVUPS 0(DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VMOVUPS 0(R12), Y4
	VMOVUPS 32(R12), Y5
	VMOVUPS 64(R12), Y6
	VMOVUPS 96(R12), Y7

loop2x32:
	NEXT
	VMOVUPS      0(R13), Y8
	VMOVUPS      32(R13), Y9
	VMOVUPS      64(R13), Y10
	VMOVUPS      96(R13), Y11
	VBROADCASTSS (SI)(AX*4), Y12
	MACR(Y8, Y12, Y13, Y0)
	MACR(Y9, Y12, Y14, Y1)
	MACR(Y10, Y12, Y15, Y2)
	MACR(Y11, Y12, Y13, Y3)
	VBROADCASTSS (R11)(AX*4), Y12
	MACR(Y8, Y12, Y14, Y4)
	MACR(Y9, Y12, Y15, Y5)
	MACR(Y10, Y12, Y13, Y6)
	MACR(Y11, Y12, Y14, Y7)
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop2x32

	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 0(R12)
	VMOVUPS Y5, 32(R12)
	VMOVUPS Y6, 64(R12)
	VMOVUPS Y7, 96(R12)
	VZEROUPPER
	RET

// func kern3x16(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
TEXT ·kern3x16(SB), NOSPLIT, $0-64
	ARGS
	LEAQ    (SI)(R9*1), R11
	LEAQ    (R11)(R9*1), R12
	VMOVUPS 0(DI), Y0
	VMOVUPS 32(DI), Y1
	ADDQ    R8, DI
	VMOVUPS 0(DI), Y2
	VMOVUPS 32(DI), Y3
	ADDQ    R8, DI
	VMOVUPS 0(DI), Y4
	VMOVUPS 32(DI), Y5

loop3x16:
	NEXT
	VMOVUPS      0(R13), Y8
	VMOVUPS      32(R13), Y9
	VBROADCASTSS (SI)(AX*4), Y10
	MACR(Y8, Y10, Y13, Y0)
	MACR(Y9, Y10, Y14, Y1)
	VBROADCASTSS (R11)(AX*4), Y11
	MACR(Y8, Y11, Y15, Y2)
	MACR(Y9, Y11, Y13, Y3)
	VBROADCASTSS (R12)(AX*4), Y12
	MACR(Y8, Y12, Y14, Y4)
	MACR(Y9, Y12, Y15, Y5)
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop3x16

	VMOVUPS Y4, 0(DI)
	VMOVUPS Y5, 32(DI)
	SUBQ    R8, DI
	VMOVUPS Y2, 0(DI)
	VMOVUPS Y3, 32(DI)
	SUBQ    R8, DI
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VZEROUPPER
	RET

// func kern4x16(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
TEXT ·kern4x16(SB), NOSPLIT, $0-64
	ARGS
	LEAQ    (SI)(R9*1), R11
	LEAQ    (R11)(R9*1), R12
	ADDQ    R12, R9 // R9: row 3 of x
	VMOVUPS 0(DI), Y0
	VMOVUPS 32(DI), Y1
	ADDQ    R8, DI
	VMOVUPS 0(DI), Y2
	VMOVUPS 32(DI), Y3
	ADDQ    R8, DI
	VMOVUPS 0(DI), Y4
	VMOVUPS 32(DI), Y5
	ADDQ    R8, DI
	VMOVUPS 0(DI), Y6
	VMOVUPS 32(DI), Y7

loop4x16:
	NEXT
	VMOVUPS      0(R13), Y8
	VMOVUPS      32(R13), Y9
	VBROADCASTSS (SI)(AX*4), Y10
	MACR(Y8, Y10, Y13, Y0)
	MACR(Y9, Y10, Y14, Y1)
	VBROADCASTSS (R11)(AX*4), Y11
	MACR(Y8, Y11, Y15, Y2)
	MACR(Y9, Y11, Y13, Y3)
	VBROADCASTSS (R12)(AX*4), Y12
	MACR(Y8, Y12, Y14, Y4)
	MACR(Y9, Y12, Y15, Y5)
	VBROADCASTSS (R9)(AX*4), Y10
	MACR(Y8, Y10, Y13, Y6)
	MACR(Y9, Y10, Y14, Y7)
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop4x16

	VMOVUPS Y6, 0(DI)
	VMOVUPS Y7, 32(DI)
	SUBQ    R8, DI
	VMOVUPS Y4, 0(DI)
	VMOVUPS Y5, 32(DI)
	SUBQ    R8, DI
	VMOVUPS Y2, 0(DI)
	VMOVUPS Y3, 32(DI)
	SUBQ    R8, DI
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VZEROUPPER
	RET

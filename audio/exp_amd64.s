#include "textflag.h"

// Constants of math.Exp's amd64 assembly (archExp), as bits.
DATA expc<>+0(SB)/8, $0x3ff71547652b82fe   // LOG2E
DATA expc<>+8(SB)/8, $0x3fe62e42fefa3000   // LN2U
DATA expc<>+16(SB)/8, $0x3d53de6af278ece6  // LN2L
DATA expc<>+24(SB)/8, $0x3fb0000000000000  // 0.0625
DATA expc<>+32(SB)/8, $0x3efa01a01a01a01a  // 1/8!
DATA expc<>+40(SB)/8, $0x3f2a01a01a01a01a  // 1/7!
DATA expc<>+48(SB)/8, $0x3f56c16c16c16c17  // 1/6!
DATA expc<>+56(SB)/8, $0x3f81111111111111  // 1/5!
DATA expc<>+64(SB)/8, $0x3fa5555555555555  // 1/4!
DATA expc<>+72(SB)/8, $0x3fc5555555555555  // 1/3!
DATA expc<>+80(SB)/8, $0x3fe0000000000000  // 0.5
DATA expc<>+88(SB)/8, $0x3ff0000000000000  // 1
DATA expc<>+96(SB)/8, $0x4000000000000000  // 2
DATA expc<>+104(SB)/8, $0x00000000000003ff // exponent bias
GLOBL expc<>(SB), RODATA|NOPTR, $112

// func exps4(x *float64, n int)
//
// x[i] = math.Exp(x[i]) for n (a multiple of 4, at least 4) values in
// [-700, 700], four at a time: archExp's path for CPUs with FMA,
// operation for operation (k = x*LOG2E rounded to an integer as CVTSD2SL
// rounds it, the two fused reductions by k*LN2U and k*LN2L, the scaling
// by 1/16, the fused Taylor polynomial, four squarings as (y+2)*y, the
// final fused y*(y+2)+1, times 2^k). In that range k stays within the
// normal exponents, so archExp's overflow and subnormal branches are
// never taken.
TEXT ·exps4(SB), NOSPLIT, $0-16
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	SHLQ         $3, CX
	XORQ         AX, AX
	VBROADCASTSD expc<>+0(SB), Y15
	VBROADCASTSD expc<>+8(SB), Y14
	VBROADCASTSD expc<>+16(SB), Y13
	VBROADCASTSD expc<>+24(SB), Y12
	VBROADCASTSD expc<>+96(SB), Y11
	VBROADCASTSD expc<>+88(SB), Y10
	VPBROADCASTQ expc<>+104(SB), Y9

exploop:
	VMOVUPD     (DI)(AX*1), Y0
	VMULPD      Y0, Y15, Y1        // x * LOG2E
	VCVTPD2DQY  Y1, X2             // k, rounded as MXCSR says
	VCVTDQ2PD   X2, Y1             // float64(k)
	VFNMADD231PD Y14, Y1, Y0       // x - k*LN2U
	VFNMADD231PD Y13, Y1, Y0       // - k*LN2L
	VMULPD      Y12, Y0, Y0        // / 16
	VBROADCASTSD expc<>+32(SB), Y1
	VBROADCASTSD expc<>+40(SB), Y3
	VFMADD213PD Y3, Y0, Y1
	VBROADCASTSD expc<>+48(SB), Y3
	VFMADD213PD Y3, Y0, Y1
	VBROADCASTSD expc<>+56(SB), Y3
	VFMADD213PD Y3, Y0, Y1
	VBROADCASTSD expc<>+64(SB), Y3
	VFMADD213PD Y3, Y0, Y1
	VBROADCASTSD expc<>+72(SB), Y3
	VFMADD213PD Y3, Y0, Y1
	VBROADCASTSD expc<>+80(SB), Y3
	VFMADD213PD Y3, Y0, Y1
	VFMADD213PD Y10, Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      Y11, Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      Y11, Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      Y11, Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      Y11, Y0, Y1
	VFMADD213PD Y10, Y1, Y0        // y*(y+2) + 1
	VPMOVSXDQ   X2, Y2             // k as int64
	VPADDQ      Y9, Y2, Y2
	VPSLLQ      $52, Y2, Y2        // 2^k
	VMULPD      Y2, Y0, Y0
	VMOVUPD     Y0, (DI)(AX*1)
	ADDQ        $32, AX
	CMPQ        AX, CX
	JLT         exploop
	VZEROUPPER
	RET

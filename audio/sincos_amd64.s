#include "textflag.h"

// Constants of math.Sincos, as bits.
DATA scc<>+0(SB)/8, $0x3ff45f306dc9c883   // 4/Pi
DATA scc<>+8(SB)/8, $0x3fe921fb40000000   // PI4A
DATA scc<>+16(SB)/8, $0x3e64442d00000000  // PI4B
DATA scc<>+24(SB)/8, $0x3ce8469898cc5170  // PI4C
DATA scc<>+32(SB)/8, $0x3fe0000000000000  // 0.5
DATA scc<>+40(SB)/8, $0x3ff0000000000000  // 1
DATA scc<>+48(SB)/8, $0x3de5d8fd1fd19ccd  // _sin[0..5]
DATA scc<>+56(SB)/8, $0xbe5ae5e5a9291f5d
DATA scc<>+64(SB)/8, $0x3ec71de3567d48a1
DATA scc<>+72(SB)/8, $0xbf2a01a019bfdf03
DATA scc<>+80(SB)/8, $0x3f8111111110f7d0
DATA scc<>+88(SB)/8, $0xbfc5555555555548
DATA scc<>+96(SB)/8, $0xbda8fa49a0861a9b  // _cos[0..5]
DATA scc<>+104(SB)/8, $0x3e21ee9d7b4e3f05
DATA scc<>+112(SB)/8, $0xbe927e4f7eac4bc6
DATA scc<>+120(SB)/8, $0x3efa01a019c844f5
DATA scc<>+128(SB)/8, $0xbf56c16c16c14f91
DATA scc<>+136(SB)/8, $0x3fa555555555554b
DATA scc<>+144(SB)/8, $0x8000000000000000  // sign
DATA scc<>+152(SB)/8, $1
DATA scc<>+160(SB)/8, $3
DATA scc<>+168(SB)/8, $4
DATA scc<>+176(SB)/8, $7
DATA scc<>+184(SB)/8, $2
GLOBL scc<>(SB), RODATA|NOPTR, $192

// POLY sets Y6 to (((((c0*zz + c1)*zz + c2)*zz + c3)*zz + c4)*zz + c5)
// for the six constants at off, zz in Y5: one VMULPD and one VADDPD a
// step, as math.Sincos computes it.
#define POLY(off) \
	VBROADCASTSD scc<>+(off)(SB), Y6; \
	VMULPD       Y5, Y6, Y6; \
	VBROADCASTSD scc<>+(off+8)(SB), Y7; \
	VADDPD       Y7, Y6, Y6; \
	VMULPD       Y5, Y6, Y6; \
	VBROADCASTSD scc<>+(off+16)(SB), Y7; \
	VADDPD       Y7, Y6, Y6; \
	VMULPD       Y5, Y6, Y6; \
	VBROADCASTSD scc<>+(off+24)(SB), Y7; \
	VADDPD       Y7, Y6, Y6; \
	VMULPD       Y5, Y6, Y6; \
	VBROADCASTSD scc<>+(off+32)(SB), Y7; \
	VADDPD       Y7, Y6, Y6; \
	VMULPD       Y5, Y6, Y6; \
	VBROADCASTSD scc<>+(off+40)(SB), Y7; \
	VADDPD       Y7, Y6, Y6

// func sincos4(s, c, x *float64, n int)
//
// s[i], c[i] = math.Sincos(x[i]) for n (a multiple of 4, at least 4)
// values in (0, 2^20), four at a time, in math.Sincos's steps for a
// positive argument below its reduction threshold: j = trunc(x * 4/Pi),
// odd j (and y) up by one, j mod 8, z = ((x - y*PI4A) - y*PI4B) - y*PI4C,
// the two polynomials in zz = z*z with every product rounded on its own,
// the swap for octants 1 and 2 and the signs for j > 3 and j > 1.
TEXT ·sincos4(SB), NOSPLIT, $0-32
	MOVQ s+0(FP), DI
	MOVQ c+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ n+24(FP), CX
	SHLQ $3, CX
	XORQ AX, AX

scloop:
	VMOVUPD      (DX)(AX*1), Y0
	VBROADCASTSD scc<>+0(SB), Y1
	VMULPD       Y1, Y0, Y1          // x * 4/Pi
	VCVTTPD2DQY  Y1, X1              // j, truncated
	VPMOVSXDQ    X1, Y1              // j as int64
	VPBROADCASTQ scc<>+152(SB), Y2
	VPAND        Y2, Y1, Y2          // j & 1
	VPADDQ       Y2, Y1, Y1          // j += j&1 (so y too)
	VPBROADCASTQ scc<>+176(SB), Y2
	VPAND        Y2, Y1, Y2          // j & 7, kept in Y2
	// y = float64(j) before the & 7: j fits in 32 bits; back to int32 to convert.
	VPSHUFD      $0x08, Y1, Y3       // low dwords of each 128-bit half
	VPERMQ       $0x08, Y3, Y3       // the four low dwords together
	VCVTDQ2PD    X3, Y3              // y
	VBROADCASTSD scc<>+8(SB), Y4
	VMULPD       Y4, Y3, Y4
	VSUBPD       Y4, Y0, Y0          // x - y*PI4A
	VBROADCASTSD scc<>+16(SB), Y4
	VMULPD       Y4, Y3, Y4
	VSUBPD       Y4, Y0, Y0          // - y*PI4B
	VBROADCASTSD scc<>+24(SB), Y4
	VMULPD       Y4, Y3, Y4
	VSUBPD       Y4, Y0, Y0          // - y*PI4C: z
	// Octant: j > 3 flips both signs and takes 4 off; then j > 1 flips cos.
	VPBROADCASTQ scc<>+160(SB), Y3
	VPCMPGTQ     Y3, Y2, Y8          // j > 3
	VPBROADCASTQ scc<>+168(SB), Y3
	VPAND        Y8, Y3, Y3
	VPSUBQ       Y3, Y2, Y2          // j -= 4 there
	VPBROADCASTQ scc<>+152(SB), Y3
	VPCMPGTQ     Y3, Y2, Y9          // j > 1
	VPXOR        Y8, Y9, Y9          // cos sign
	VPCMPEQQ     Y3, Y2, Y10         // j == 1
	VPBROADCASTQ scc<>+184(SB), Y3
	VPCMPEQQ     Y3, Y2, Y11
	VPOR         Y11, Y10, Y10       // j == 1 or 2: swap
	VMULPD       Y0, Y0, Y5          // zz
	// cos = (1 - 0.5*zz) + zz*zz*poly
	POLY(96)
	VMULPD       Y5, Y5, Y7
	VMULPD       Y6, Y7, Y6
	VBROADCASTSD scc<>+32(SB), Y7
	VMULPD       Y5, Y7, Y7
	VBROADCASTSD scc<>+40(SB), Y12
	VSUBPD       Y7, Y12, Y12
	VADDPD       Y6, Y12, Y12        // cos
	// sin = z + z*zz*poly
	POLY(48)
	VMULPD       Y5, Y0, Y7
	VMULPD       Y6, Y7, Y6
	VADDPD       Y6, Y0, Y13         // sin
	VBLENDVPD    Y10, Y12, Y13, Y14  // sin out: cos where swapped
	VBLENDVPD    Y10, Y13, Y12, Y15  // cos out: sin where swapped
	VBROADCASTSD scc<>+144(SB), Y3
	VPAND        Y3, Y8, Y8
	VPAND        Y3, Y9, Y9
	VXORPD       Y8, Y14, Y14
	VXORPD       Y9, Y15, Y15
	VMOVUPD      Y14, (DI)(AX*1)
	VMOVUPD      Y15, (SI)(AX*1)
	ADDQ         $32, AX
	CMPQ         AX, CX
	JLT          scloop
	VZEROUPPER
	RET

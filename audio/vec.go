package audio

import "math"

// logsGo is logs one value at a time.
func logsGo(x []float64) {
	for i, v := range x {
		x[i] = math.Log(v)
	}
}

// allNormal reports whether every value is positive, normal and finite:
// sign and exponent bits in [0x001, 0x7FE].
func allNormal(x []float64) bool {
	var bad uint64
	for _, v := range x {
		// Sign and exponent less one, in 12 bits: 0..0x7FD when valid.
		t := (math.Float64bits(v)>>52 - 1) & 0xFFF
		bad |= (t + 2) >> 11
	}
	return bad == 0
}

// windowFrameGo sets dst[i] = float64(x[i]) * w[i].
func windowFrameGo(dst []float64, x []float32, w []float64) {
	w = w[:len(dst)]
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = float64(x[i]) * w[i]
	}
}

// overlapAddGo adds frame[i] * scale * w[i] to out[i], each product
// rounded on its own.
func overlapAddGo(out, frame, w []float64, scale float64) {
	frame, w = frame[:len(out)], w[:len(out)]
	for i := range out {
		out[i] += float64(float64(frame[i]*scale) * w[i])
	}
}

// mulToGo sets dst[i] = x[i] * w[i].
func mulToGo(dst, x, w []float64) {
	x, w = x[:len(dst)], w[:len(dst)]
	for i := range dst {
		dst[i] = x[i] * w[i]
	}
}

// pcm16ToFloatGo sets out[i] to the little-endian 16-bit sample at b[2i]
// over 2^15 (exact in float32).
func pcm16ToFloatGo(out []float32, b []byte) {
	b = b[:2*len(out)]
	for i := range out {
		out[i] = float32(int16(uint16(b[2*i])|uint16(b[2*i+1])<<8)) * (1.0 / (1 << 15))
	}
}

// floatToPCM16Go writes ToPCM16(x[i]) little-endian at out[2i].
func floatToPCM16Go(out []byte, x []float32) {
	out = out[:2*len(x)]
	for i, v := range x {
		p := uint16(ToPCM16(v))
		out[2*i], out[2*i+1] = byte(p), byte(p>>8)
	}
}

// expsGo is Exps one value at a time.
func expsGo(x []float64) {
	for i, v := range x {
		x[i] = math.Exp(v)
	}
}

// expRange reports whether every value is in [-700, 700] (NaN is not).
func expRange(x []float64) bool {
	ok := true
	for _, v := range x {
		ok = ok && v >= -700 && v <= 700
	}
	return ok
}

// sincosesGo is sincoses one value at a time.
func sincosesGo(s, c, x []float64) {
	for i, v := range x {
		s[i], c[i] = math.Sincos(v)
	}
}

// sincosRange reports whether every value is in (0, 2^20).
func sincosRange(x []float64) bool {
	ok := true
	for _, v := range x {
		ok = ok && v > 0 && v < 1<<20
	}
	return ok
}

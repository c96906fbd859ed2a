package history

import "math"

// Embeddings are kept as IEEE 754 binary16: half the bytes of float32, and
// for unit vectors of a few hundred dimensions the cosine moves by about
// 1e-4 at most (measured in TestFP16CosineCost and docs/history.md).

// toHalf rounds f to the nearest binary16, ties to even. Values beyond the
// largest finite half saturate rather than become infinities, so a stray
// large component cannot turn a whole cosine into NaN; NaN stays NaN.
func toHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff && mant != 0:
		return sign | 0x7e00
	case exp == 0xff:
		return sign | 0x7bff
	}
	e := exp - 127 + 15
	switch {
	case e >= 0x1f:
		return sign | 0x7bff
	case e <= 0:
		// Subnormal half (or zero): shift the implicit-one mantissa into
		// place and round to nearest even on the bits shifted out.
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		half := m >> shift
		rem := m & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is still correct
	}
	if half >= 0x7c00 {
		return sign | 0x7bff
	}
	return sign | uint16(half)
}

// fromHalf is exact: every binary16 is a float32.
func fromHalf(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: normalize the mantissa.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

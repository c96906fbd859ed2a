package preprocess

import "math"

// This file reproduces Pillow 9.4's bicubic resampling (libImaging/Resample.c)
// bit for bit, restricted to the pixels of a crop window.
//
// Pillow resizes in two separable passes over 8-bit data: horizontal first,
// its result clipped to uint8, then vertical. Each output pixel's weights
// come from a cubic kernel (a = -0.5) widened by the reduction factor when
// shrinking, normalised to sum 1 in float64 and rounded to 22-bit fixed
// point. Each output pixel depends only on its own window of source pixels,
// which is what lets the crop be computed without the rest of the resized
// image.

// precisionBits is Pillow's PRECISION_BITS: 32 bits minus 8 for the pixel
// and 2 for the overshoot of a kernel with negative lobes.
const precisionBits = 32 - 8 - 2

// bicubicSupport is the kernel radius at scale 1.
const bicubicSupport = 2.0

// bicubic is Pillow's bicubic_filter. The explicit float64 conversions stop
// Go from fusing multiply-adds (it may on arm64), which would change the
// rounding of the weights compared with the C build.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64(float64((a+2.0)*x)-(a+3.0))*x)*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(float64(x-5)*x)+8)*x)-4) * a
	}
	return 0
}

// axisWeights holds the fixed-point weights of one resampling direction for
// a run of consecutive output positions.
type axisWeights struct {
	ksize int
	// start[i] is the first source index for output first+i, count[i] how
	// many source samples it reads.
	start, count []int
	// coeffs[i*ksize : i*ksize+count[i]] are its weights.
	coeffs []int32
}

// compute fills w for output positions [first, first+n) of a resize from
// inSize to outSize, as Pillow's precompute_coeffs and normalize_coeffs_8bpc
// do for the whole axis.
func (w *axisWeights) compute(inSize, outSize, first, n int) {
	// Pillow's box is (0, 0, w, h) in float; in1-in0 is exact.
	scale := float64(inSize) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := bicubicSupport * filterscale
	w.ksize = int(math.Ceil(support))*2 + 1
	w.start = resizeInts(w.start, n)
	w.count = resizeInts(w.count, n)
	if cap(w.coeffs) < n*w.ksize {
		w.coeffs = make([]int32, n*w.ksize)
	}
	w.coeffs = w.coeffs[:n*w.ksize]
	var pre [64]float64
	weights := pre[:0]
	if w.ksize > len(pre) {
		weights = make([]float64, 0, w.ksize)
	}
	ss := 1.0 / filterscale
	for i := 0; i < n; i++ {
		center := float64(float64(first+i)+0.5) * scale
		// C's (int) cast truncates toward zero, as Go's conversion does.
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		weights = weights[:xmax]
		total := 0.0
		for x := 0; x < xmax; x++ {
			v := bicubic(float64(float64(x+xmin)-center+0.5) * ss)
			weights[x] = v
			total += v
		}
		k := w.coeffs[i*w.ksize : (i+1)*w.ksize]
		for x := range k {
			k[x] = 0
		}
		for x := 0; x < xmax; x++ {
			v := weights[x]
			if total != 0 {
				v /= total
			}
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		w.start[i] = xmin
		w.count[i] = xmax
	}
}

// span returns the range of source indices the computed outputs read.
func (w *axisWeights) span() (lo, hi int) {
	lo, hi = math.MaxInt, 0
	for i := range w.start {
		lo = min(lo, w.start[i])
		hi = max(hi, w.start[i]+w.count[i])
	}
	return lo, hi
}

func resizeInts(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}

// clip8 is Pillow's clip8: the accumulator's integer part clamped to uint8.
func clip8(acc int32) uint8 {
	v := acc >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

const roundHalf = int32(1) << (precisionBits - 1)

// horizontal resamples one row of src (channels bytes a pixel) into dst,
// one output pixel per entry of w.
//
// The taps are taken four at a time from slices whose length is checked
// once, so that the loop body has no bounds checks; integer sums do not
// depend on their order, so the result is Pillow's bit for bit. This
// pass was half of a 720p frame's preprocessing.
func horizontal(dst, src []byte, w *axisWeights, channels int) {
	switch channels {
	case 3:
		for i, x0 := range w.start {
			k := w.coeffs[i*w.ksize:][:w.count[i]]
			s := src[x0*3:][:len(k)*3]
			d := dst[i*3:][:3]
			d[0], d[1], d[2] = horizontal3(s, k)
		}
	case 1:
		for i, x0 := range w.start {
			k := w.coeffs[i*w.ksize:][:w.count[i]]
			dst[i] = horizontal1(src[x0:][:len(k)], k)
		}
	default:
		for i, x0 := range w.start {
			k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
			for ch := 0; ch < channels; ch++ {
				acc := roundHalf
				for j, c := range k {
					acc += int32(src[(x0+j)*channels+ch]) * c
				}
				dst[i*channels+ch] = clip8(acc)
			}
		}
	}
}

// horizontal3 is one RGB output pixel: the taps k over the pixels s.
func horizontal3(s []byte, k []int32) (uint8, uint8, uint8) {
	r, g, b := roundHalf, roundHalf, roundHalf
	for len(k) >= 4 && len(s) >= 12 {
		p := s[:12]
		c0, c1, c2, c3 := k[0], k[1], k[2], k[3]
		r += int32(p[0])*c0 + int32(p[3])*c1 + int32(p[6])*c2 + int32(p[9])*c3
		g += int32(p[1])*c0 + int32(p[4])*c1 + int32(p[7])*c2 + int32(p[10])*c3
		b += int32(p[2])*c0 + int32(p[5])*c1 + int32(p[8])*c2 + int32(p[11])*c3
		k, s = k[4:], s[12:]
	}
	for len(k) >= 1 && len(s) >= 3 {
		p := s[:3]
		c := k[0]
		r += int32(p[0]) * c
		g += int32(p[1]) * c
		b += int32(p[2]) * c
		k, s = k[1:], s[3:]
	}
	return clip8(r), clip8(g), clip8(b)
}

// horizontal1 is one single-channel output pixel.
func horizontal1(s []byte, k []int32) uint8 {
	acc := roundHalf
	for len(k) >= 4 && len(s) >= 4 {
		p := s[:4]
		acc += int32(p[0])*k[0] + int32(p[1])*k[1] + int32(p[2])*k[2] + int32(p[3])*k[3]
		k, s = k[4:], s[4:]
	}
	for j, c := range k {
		acc += int32(s[j]) * c
	}
	return clip8(acc)
}

// vertical resamples the rows held in tmp (rowLen bytes each, row 0 being
// source row rowOffset) into the rows of dst, one per entry of w. acc is
// scratch of at least rowLen entries. Four source rows are summed into
// acc at a time, which quarters acc's loads and stores.
func vertical(dst, tmp []byte, rowLen, rowOffset int, w *axisWeights, acc []int32) {
	a := acc[:rowLen]
	for i, y0 := range w.start {
		k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
		for x := range a {
			a[x] = roundHalf
		}
		rows := tmp[(y0-rowOffset)*rowLen:]
		for len(k) >= 4 {
			r0, r1, r2, r3 := rows[:rowLen], rows[rowLen:2*rowLen], rows[2*rowLen:3*rowLen], rows[3*rowLen:4*rowLen]
			c0, c1, c2, c3 := k[0], k[1], k[2], k[3]
			_, _, _, _ = r0[len(a)-1], r1[len(a)-1], r2[len(a)-1], r3[len(a)-1]
			for x := range a {
				a[x] += int32(r0[x])*c0 + int32(r1[x])*c1 + int32(r2[x])*c2 + int32(r3[x])*c3
			}
			k, rows = k[4:], rows[4*rowLen:]
		}
		for j, c := range k {
			row := rows[j*rowLen : (j+1)*rowLen]
			_ = row[len(a)-1]
			for x := range a {
				a[x] += int32(row[x]) * c
			}
		}
		out := dst[i*rowLen : (i+1)*rowLen]
		_ = out[len(a)-1]
		for x, v := range a {
			out[x] = clip8(v)
		}
	}
}

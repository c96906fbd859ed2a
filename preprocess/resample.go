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
func horizontal(dst, src []byte, w *axisWeights, channels int) {
	switch channels {
	case 3:
		for i, x0 := range w.start {
			k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
			s := src[x0*3 : (x0+len(k))*3]
			r, g, b := roundHalf, roundHalf, roundHalf
			for j, c := range k {
				p := s[j*3 : j*3+3]
				r += int32(p[0]) * c
				g += int32(p[1]) * c
				b += int32(p[2]) * c
			}
			d := dst[i*3 : i*3+3]
			d[0], d[1], d[2] = clip8(r), clip8(g), clip8(b)
		}
	case 1:
		for i, x0 := range w.start {
			k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
			s := src[x0 : x0+len(k)]
			acc := roundHalf
			for j, c := range k {
				acc += int32(s[j]) * c
			}
			dst[i] = clip8(acc)
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

// vertical resamples the rows held in tmp (rowLen bytes each, row 0 being
// source row rowOffset) into the rows of dst, one per entry of w. acc is
// scratch of at least rowLen entries.
func vertical(dst, tmp []byte, rowLen, rowOffset int, w *axisWeights, acc []int32) {
	for i, y0 := range w.start {
		k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
		a := acc[:rowLen]
		for x := range a {
			a[x] = roundHalf
		}
		base := (y0 - rowOffset) * rowLen
		for j, c := range k {
			row := tmp[base+j*rowLen : base+(j+1)*rowLen]
			for x, v := range row {
				a[x] += int32(v) * c
			}
		}
		out := dst[i*rowLen : (i+1)*rowLen]
		for x, v := range a {
			out[x] = clip8(v)
		}
	}
}

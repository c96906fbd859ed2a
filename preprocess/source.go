package preprocess

// rowSource yields the source image one row at a time, so that camera
// formats are converted only where the crop window needs them.
type rowSource interface {
	// row returns row y; only pixels [x0,x1) need be valid, pixel x
	// starting at byte x*channels. The slice is valid until the next call.
	row(y, x0, x1 int) []byte
}

// packedSource is an image already in its resize mode.
type packedSource struct {
	data   []byte
	stride int
}

func (s *packedSource) row(y, _, _ int) []byte { return s.data[y*s.stride:] }

// yuyvSource converts packed YUV 4:2:2 (Y0 U Y1 V) to RGB on demand.
type yuyvSource struct {
	data   []byte
	stride int
	rgb    []byte
}

func (s *yuyvSource) set(data []byte, stride, width int) {
	s.data, s.stride = data, stride
	s.rgb = grow(s.rgb, width*3)
}

func (s *yuyvSource) row(y, x0, x1 int) []byte {
	line := s.data[y*s.stride:]
	// Whole pairs, so that each chroma sample is converted once.
	for x := x0 &^ 1; x < x1; x += 2 {
		q := line[x*2 : x*2+4]
		chroma := chromaTerms(q[1], q[3])
		chroma.rgb(s.rgb[x*3:x*3+3], q[0])
		chroma.rgb(s.rgb[x*3+3:x*3+6], q[2])
	}
	return s.rgb
}

// nv12Source converts NV12 (Y plane, then interleaved Cb Cr at half
// resolution both ways) to RGB on demand.
type nv12Source struct {
	data   []byte
	stride int
	chroma int // offset of the CbCr plane
	rgb    []byte
}

func (s *nv12Source) set(data []byte, stride, width, height int) {
	s.data, s.stride, s.chroma = data, stride, stride*height
	s.rgb = grow(s.rgb, width*3)
}

func (s *nv12Source) row(y, x0, x1 int) []byte {
	luma := s.data[y*s.stride:]
	cbcr := s.data[s.chroma+(y>>1)*s.stride:]
	for x := x0 &^ 1; x < x1; x += 2 {
		chroma := chromaTerms(cbcr[x], cbcr[x+1])
		chroma.rgb(s.rgb[x*3:x*3+3], luma[x])
		if x+1 < len(s.rgb)/3 {
			chroma.rgb(s.rgb[x*3+3:x*3+6], luma[x+1])
		}
	}
	return s.rgb
}

// yuvToRGB is the BT.601 limited-range conversion documented in the package
// comment.
func yuvToRGB(dst []byte, y, cb, cr uint8) {
	chromaTerms(cb, cr).rgb(dst, y)
}

// chroma holds the chroma part of each channel, rounding term included,
// shared by the pixels of one chroma sample.
type chroma struct{ r, g, b int32 }

func chromaTerms(cb, cr uint8) chroma {
	d, e := int32(cb)-128, int32(cr)-128
	return chroma{409*e + 128, -100*d - 208*e + 128, 516*d + 128}
}

func (c chroma) rgb(dst []byte, y uint8) {
	l := 298 * (int32(y) - 16)
	dst[0] = clampByte((l + c.r) >> 8)
	dst[1] = clampByte((l + c.g) >> 8)
	dst[2] = clampByte((l + c.b) >> 8)
}

func clampByte(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

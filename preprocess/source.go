package preprocess

import "github.com/clipd/clipd/frame"

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
	frame.YUYVToRGB(s.rgb, s.data[y*s.stride:], x0, x1)
	return s.rgb
}

// nv12Source converts NV12 (Y plane, then interleaved Cb Cr at half
// resolution both ways) to RGB on demand.
type nv12Source struct {
	data   []byte
	stride int
	chroma int // offset of the CbCr plane
	width  int
	rgb    []byte
}

func (s *nv12Source) set(data []byte, stride, width, height int) {
	s.data, s.stride, s.chroma, s.width = data, stride, stride*height, width
	s.rgb = grow(s.rgb, width*3)
}

func (s *nv12Source) row(y, x0, x1 int) []byte {
	frame.NV12ToRGB(s.rgb, s.data[y*s.stride:], s.data[s.chroma+(y>>1)*s.stride:], x0, x1, s.width)
	return s.rgb
}

// yuvToRGB is the BT.601 limited-range conversion of package frame.
func yuvToRGB(dst []byte, y, cb, cr uint8) { frame.YUVToRGB(dst, y, cb, cr) }

package frame

import "fmt"

// MaxSide bounds a frame's width and height, so that a corrupt size cannot
// make a consumer allocate without limit.
const MaxSide = 1 << 16

// Validate checks that Data holds a whole frame of its format, size and
// stride, so that RowRGB cannot read past it. MJPEG frames are checked for
// a plausible size only (zero means unknown); their data is the decoder's
// to judge.
func (f *Frame) Validate() error {
	stride := f.RowStride()
	switch f.Format {
	case RGB24:
		return checkPlane("RGB", len(f.Data), f.Width, f.Height, stride, 3)
	case YUYV:
		if f.Width%2 != 0 {
			return fmt.Errorf("YUYV width must be even")
		}
		return checkPlane("YUYV", len(f.Data), f.Width, f.Height, stride, 2)
	case NV12:
		if err := checkPlane("NV12 luma", len(f.Data), f.Width, f.Height, stride, 1); err != nil {
			return err
		}
		chromaRows := (f.Height + 1) / 2
		need := stride*f.Height + stride*(chromaRows-1) + 2*((f.Width+1)/2)
		if len(f.Data) < need {
			return fmt.Errorf("truncated NV12 frame: %d bytes, need %d for luma and chroma planes with stride %d", len(f.Data), need, stride)
		}
		return nil
	case MJPEG:
		if f.Width < 0 || f.Height < 0 || f.Width > MaxSide || f.Height > MaxSide {
			return fmt.Errorf("bad MJPEG frame size %dx%d", f.Width, f.Height)
		}
		return nil
	}
	return fmt.Errorf("unsupported pixel format")
}

// checkPlane validates the size of a packed plane with bpp bytes a pixel.
func checkPlane(what string, have, width, height, stride, bpp int) error {
	if width <= 0 || height <= 0 || width > MaxSide || height > MaxSide {
		return fmt.Errorf("bad %s image size %dx%d", what, width, height)
	}
	if stride < width*bpp {
		return fmt.Errorf("%s stride %d is less than width %d x %d bytes", what, stride, width, bpp)
	}
	if need := stride*(height-1) + width*bpp; have < need {
		return fmt.Errorf("truncated %s data: %d bytes, need %d", what, have, need)
	}
	return nil
}

// CheckRGB validates packed RGB pixels (stride 0: width*3) as Validate
// does an RGB24 frame.
func CheckRGB(rgb []byte, width, height, stride int) error {
	if stride == 0 {
		stride = width * 3
	}
	return checkPlane("RGB", len(rgb), width, height, stride, 3)
}

// RowRGB returns row y of a validated RGB24, YUYV or NV12 frame as packed
// RGB, pixel x at byte 3x, valid at least for pixels [x0,x1). An RGB24
// frame's own row is returned; YUV rows are converted into buf, which must
// hold Width*3 bytes, and only for the pixel pairs that cover [x0,x1), so
// that a crop converts only its own columns. The result for each pixel is
// what converting the whole frame gives.
func (f *Frame) RowRGB(buf []byte, y, x0, x1 int) []byte {
	stride := f.RowStride()
	switch f.Format {
	case RGB24:
		return f.Data[y*stride:]
	case YUYV:
		YUYVToRGB(buf, f.Data[y*stride:], x0, x1)
		return buf
	case NV12:
		luma := f.Data[y*stride:]
		cbcr := f.Data[stride*f.Height+(y>>1)*stride:]
		NV12ToRGB(buf, luma, cbcr, x0, x1, f.Width)
		return buf
	}
	panic("frame: RowRGB of a " + f.Format.String() + " frame")
}

// YUYVToRGB converts pixels [x0,x1) of one YUYV row (Y0 Cb Y1 Cr, pixel x
// of the row at byte 2x of line) to packed RGB, pixel x at dst[3x:]. Whole
// pairs are converted, each chroma sample once, so the pixel before an odd
// x0 and the one after an odd x1 are written too.
func YUYVToRGB(dst, line []byte, x0, x1 int) {
	for x := x0 &^ 1; x < x1; x += 2 {
		q := line[x*2 : x*2+4]
		c := chromaTerms(q[1], q[3])
		c.rgb(dst[x*3:x*3+3], q[0])
		c.rgb(dst[x*3+3:x*3+6], q[2])
	}
}

// NV12ToRGB converts pixels [x0,x1) of one NV12 row: luma is the row in the
// Y plane, cbcr the row of the interleaved chroma plane it takes its
// chroma from (row y/2), width the frame's width, which may be odd.
// Pixel x goes to dst[3x:]; like YUYVToRGB it converts whole pairs.
func NV12ToRGB(dst, luma, cbcr []byte, x0, x1, width int) {
	for x := x0 &^ 1; x < x1; x += 2 {
		c := chromaTerms(cbcr[x], cbcr[x+1])
		c.rgb(dst[x*3:x*3+3], luma[x])
		if x+1 < width {
			c.rgb(dst[x*3+3:x*3+6], luma[x+1])
		}
	}
}

// YUVToRGB converts one pixel with the BT.601 limited-range formula of the
// package documentation.
func YUVToRGB(dst []byte, y, cb, cr uint8) {
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

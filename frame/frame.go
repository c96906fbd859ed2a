// Package frame describes a captured camera frame, its pixel formats and
// the boxes (crops) of it that regions classify. It is shared by the
// capture sources that produce frames and the preprocessing, snapshots,
// configuration and commands that consume them, so that none of those
// imports another for these rules.
//
// # Camera YUV
//
// YUYV and NV12 frames are BT.601 limited range (Y 16..235, Cb/Cr 16..240),
// as UVC cameras and V4L2 drivers deliver them, converted to RGB with the
// integer formula
//
//	c, d, e = Y-16, Cb-128, Cr-128
//	R = clamp((298*c + 409*e + 128) >> 8)
//	G = clamp((298*c - 100*d - 208*e + 128) >> 8)
//	B = clamp((298*c + 516*d + 128) >> 8)
//
// which is within one level of the exact BT.601 matrix. Chroma is not
// interpolated: each pixel takes the chroma sample of its 2x1 (YUYV) or 2x2
// (NV12) block, i.e. the sample co-sited with the block's top-left pixel.
// A pixel's colour therefore depends only on its own block, which is what
// lets a crop convert only its own columns and rows (RowRGB) and still get
// exactly the pixels of the whole converted frame.
//
// # Boxes
//
// A Box is in pixels of the delivered frame, half-open (Pillow's crop box);
// a Rect is the same as fractions of the frame, converted by rounding each
// edge to the nearest pixel (halves away from zero) and clamping to the
// frame. Within is the rule for any crop; Validate, ValidateIn and
// Rect.Box add the region rule of at least MinSide pixels a side.
package frame

import (
	"fmt"
	"time"
)

// Format is the pixel layout of Frame.Data.
type Format int

const (
	// RGB24 is packed 8-bit R,G,B, Width*3 bytes a row (Stride may be larger).
	RGB24 Format = iota + 1
	// YUYV is packed YUV 4:2:2 (Y0 U Y1 V), Width*2 bytes a row.
	YUYV
	// NV12 is a full-size Y plane followed by an interleaved UV plane at half
	// resolution in both directions.
	NV12
	// MJPEG is one complete JPEG image (as webcams send it, possibly without
	// Huffman tables).
	MJPEG
)

var formatNames = map[Format]string{RGB24: "rgb24", YUYV: "yuyv", NV12: "nv12", MJPEG: "mjpeg"}

func (f Format) String() string {
	if s, ok := formatNames[f]; ok {
		return s
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// ParseFormat accepts the names printed by Format.String.
func ParseFormat(s string) (Format, error) {
	for f, name := range formatNames {
		if name == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown pixel format %q (want rgb24, yuyv, nv12 or mjpeg)", s)
}

// Frame is one captured image. Data is owned by the frame: sources copy
// driver buffers out before handing a frame on.
type Frame struct {
	Format Format
	Width  int
	Height int
	// Stride is the number of bytes between rows of the first plane; zero
	// means tightly packed.
	Stride int
	Data   []byte
	// Seq counts frames from one source, starting at 1.
	Seq uint64
	// Time is when the frame was captured.
	Time time.Time
	// Meta carries source-specific facts about the frame, such as the
	// synthetic camera's ground truth. Nil for real cameras.
	Meta any
}

// RowStride returns the byte distance between rows of the first plane.
func (f *Frame) RowStride() int {
	if f.Stride > 0 {
		return f.Stride
	}
	switch f.Format {
	case RGB24:
		return f.Width * 3
	case YUYV:
		return f.Width * 2
	case NV12:
		return f.Width
	}
	return 0
}

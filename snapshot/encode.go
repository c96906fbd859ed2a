package snapshot

import (
	"errors"
	"fmt"
	"sync"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/jpegturbo"
)

// DefaultQuality is the JPEG quality of snapshots unless configured.
const DefaultQuality = 85

// BoxColor is the colour of a region's outline (magenta: rare in scenes,
// visible on light and dark ones).
var BoxColor = [3]byte{255, 0, 255}

// scratch is the reusable memory of one encoding.
type scratch struct {
	thumb                       []byte
	rgb, decoded, repaired, jpg []byte
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// Encode returns a JPEG of f with box, when not nil, outlined in BoxColor
// inside its edges. An MJPEG frame without a box is returned as it came,
// not re-encoded: only the Huffman tables and EOI a webcam leaves out are
// added (jpegturbo.RepairMJPEG), so that every JPEG reader opens it. Other
// frames are converted to RGB exactly as preprocessing converts them
// (package frame) and encoded with libjpeg-turbo at quality (1..100, 0
// meaning DefaultQuality). It is safe for concurrent use, and the result
// never aliases f.Data.
func Encode(f *frame.Frame, box *frame.Box, quality int) ([]byte, error) {
	if quality == 0 {
		quality = DefaultQuality
	}
	if quality < 1 || quality > 100 {
		return nil, fmt.Errorf("snapshot: quality %d is outside 1..100", quality)
	}
	if f == nil {
		return nil, errors.New("snapshot: nil frame")
	}
	s := scratches.Get().(*scratch)
	defer scratches.Put(s)
	jpg, err := s.encode(f, box, quality)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %s frame %d (%dx%d): %w", f.Format, f.Seq, f.Width, f.Height, err)
	}
	return append([]byte(nil), jpg...), nil
}

func (s *scratch) encode(f *frame.Frame, box *frame.Box, quality int) ([]byte, error) {
	if f.Format == frame.MJPEG && box == nil {
		if err := f.Validate(); err != nil {
			return nil, err
		}
		jpg, err := jpegturbo.RepairMJPEG(s.repaired, f.Data)
		if err != nil {
			return nil, err
		}
		if len(jpg) > 0 && &jpg[0] != &f.Data[0] {
			s.repaired = jpg
		}
		// Not decoded, but a header that does not parse or disagrees with
		// the frame's size is not saved as a picture.
		hdr, err := jpegturbo.DecodeHeader(jpg)
		if err != nil {
			return nil, err
		}
		if (f.Width != 0 || f.Height != 0) && (hdr.Width != f.Width || hdr.Height != f.Height) {
			return nil, fmt.Errorf("JPEG data is %dx%d, not the frame's size", hdr.Width, hdr.Height)
		}
		return jpg, nil
	}
	img, err := s.rgbImage(f)
	if err != nil {
		return nil, err
	}
	if box != nil {
		if err := box.Within(img.Width, img.Height); err != nil {
			return nil, err
		}
		// img.Pix is s.rgb or s.decoded: ours to draw on.
		drawOutline(img.Pix, img.Width, *box, outlineWidth(img.Width, img.Height))
	}
	jpg, err := jpegturbo.Encode(img, quality, s.jpg)
	if err != nil {
		return nil, err
	}
	s.jpg = jpg[:0]
	return jpg, nil
}

// rgbImage is the frame as packed RGB pixels, in the scratch's buffers,
// converted as preprocessing converts it (grey JPEGs spread to RGB, so
// that an outline has its colour).
func (s *scratch) rgbImage(f *frame.Frame) (jpegturbo.Image, error) {
	if err := f.Validate(); err != nil {
		return jpegturbo.Image{}, err
	}
	if f.Format != frame.MJPEG {
		w, h := f.Width, f.Height
		s.rgb = grow(s.rgb, w*h*3)
		for y := 0; y < h; y++ {
			copy(s.rgb[y*w*3:(y+1)*w*3], f.RowRGB(s.rgb[y*w*3:(y+1)*w*3], y, 0, w)[:w*3])
		}
		return jpegturbo.Image{Width: w, Height: h, Channels: 3, Pix: s.rgb}, nil
	}
	jpg, err := jpegturbo.RepairMJPEG(s.repaired, f.Data)
	if err != nil {
		return jpegturbo.Image{}, err
	}
	if len(jpg) > 0 && &jpg[0] != &f.Data[0] {
		s.repaired = jpg
	}
	dec, err := jpegturbo.Decode(jpg, s.decoded)
	if err != nil {
		return jpegturbo.Image{}, err
	}
	s.decoded = dec.Pix
	if (f.Width != 0 || f.Height != 0) && (dec.Width != f.Width || dec.Height != f.Height) {
		return jpegturbo.Image{}, fmt.Errorf("JPEG data is %dx%d, not the frame's size", dec.Width, dec.Height)
	}
	if dec.Channels == 1 {
		s.rgb = grow(s.rgb, dec.Width*dec.Height*3)
		for i, v := range dec.Pix[:dec.Width*dec.Height] {
			s.rgb[3*i], s.rgb[3*i+1], s.rgb[3*i+2] = v, v, v
		}
		return jpegturbo.Image{Width: dec.Width, Height: dec.Height, Channels: 3, Pix: s.rgb}, nil
	}
	return dec, nil
}

// outlineWidth scales the outline with the frame: 4 pixels at 720 lines,
// never under 2.
func outlineWidth(w, h int) int {
	return max(2, (min(w, h)+90)/180)
}

// drawOutline paints the band of t pixels just inside b's edges of packed
// RGB pixels of a frame w wide.
func drawOutline(rgb []byte, w int, b frame.Box, t int) {
	tx, ty := min(t, (b.Dx()+1)/2), min(t, (b.Dy()+1)/2)
	fill := func(x1, y1, x2, y2 int) {
		for y := y1; y < y2; y++ {
			row := rgb[(y*w+x1)*3 : (y*w+x2)*3]
			for i := 0; i < len(row); i += 3 {
				row[i], row[i+1], row[i+2] = BoxColor[0], BoxColor[1], BoxColor[2]
			}
		}
	}
	fill(b.X1, b.Y1, b.X2, b.Y1+ty)
	fill(b.X1, b.Y2-ty, b.X2, b.Y2)
	fill(b.X1, b.Y1, b.X1+tx, b.Y2)
	fill(b.X2-tx, b.Y1, b.X2, b.Y2)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

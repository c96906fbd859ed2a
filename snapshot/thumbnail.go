package snapshot

import (
	"errors"
	"fmt"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/jpegturbo"
)

// Thumbnail encodes a small JPEG of a frame, or of box of it (nil: the
// whole frame), scaled down by averaging so that its longer side is at
// most maxSide: the pictures of the camera memory's search results. Safe
// for concurrent use.
func Thumbnail(f *frame.Frame, box *frame.Box, maxSide, quality int) ([]byte, error) {
	if f == nil {
		return nil, errors.New("snapshot: nil frame")
	}
	if maxSide < 8 || quality < 1 || quality > 100 {
		return nil, fmt.Errorf("snapshot: thumbnail side %d or quality %d out of range", maxSide, quality)
	}
	s := scratches.Get().(*scratch)
	defer scratches.Put(s)
	img, err := s.rgbImage(f)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %s frame %d (%dx%d): %w", f.Format, f.Seq, f.Width, f.Height, err)
	}
	b := frame.Full(img.Width, img.Height)
	if box != nil {
		if err := box.Within(img.Width, img.Height); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		b = *box
	}
	// An integer factor keeps every output pixel the plain mean of a
	// square of input pixels. A box thinner than the factor on one side
	// (a narrow region) makes a thumbnail one pixel across on that side,
	// the mean of the whole width (fx) or height (fy): never of pixels
	// outside the box, which at the frame's edge are outside the frame.
	factor := (max(b.Dx(), b.Dy()) + maxSide - 1) / maxSide
	fx, fy := min(factor, b.Dx()), min(factor, b.Dy())
	w, h := b.Dx()/fx, b.Dy()/fy
	s.thumb = grow(s.thumb, w*h*3)
	stride := img.Width * img.Channels
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var sum [3]int
			for dy := 0; dy < fy; dy++ {
				row := img.Pix[(b.Y1+y*fy+dy)*stride:]
				for dx := 0; dx < fx; dx++ {
					p := row[(b.X1+x*fx+dx)*img.Channels:]
					if img.Channels == 1 {
						sum[0] += int(p[0])
						sum[1] += int(p[0])
						sum[2] += int(p[0])
						continue
					}
					sum[0] += int(p[0])
					sum[1] += int(p[1])
					sum[2] += int(p[2])
				}
			}
			n := fx * fy
			o := s.thumb[(y*w+x)*3:]
			o[0], o[1], o[2] = byte((sum[0]+n/2)/n), byte((sum[1]+n/2)/n), byte((sum[2]+n/2)/n)
		}
	}
	jpg, err := jpegturbo.Encode(jpegturbo.Image{Width: w, Height: h, Channels: 3, Pix: s.thumb}, quality, s.jpg)
	if err != nil {
		return nil, err
	}
	s.jpg = jpg[:0]
	return append([]byte(nil), jpg...), nil
}

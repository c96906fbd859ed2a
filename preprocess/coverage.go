package preprocess

import (
	"fmt"
	"math"

	"github.com/clipd/clipd/frame"
)

// Coverage is which part of a frame CLIP looks at for a box: the box is
// resized so that its shorter side is the input size and only the centre
// square is kept, so of a 1280x720 frame it sees the centre 720x720.
type Coverage struct {
	// FrameWidth and FrameHeight are the frame's size.
	FrameWidth, FrameHeight int
	// Box is the box classified (the whole frame, or a region).
	Box frame.Box
	// Seen is the part of Box the centre crop keeps, in frame pixels,
	// rounded to the nearest pixel. The bicubic kernel also reads a few
	// pixels around it, with small weights.
	Seen frame.Box
}

// CoverageOf computes the Coverage of box in a width×height frame for an
// input of size×size.
func CoverageOf(box frame.Box, width, height, size int) (Coverage, error) {
	if err := box.Within(width, height); err != nil {
		return Coverage{}, err
	}
	if size <= 0 {
		return Coverage{}, fmt.Errorf("input size %d is not positive", size)
	}
	w, h := box.Dx(), box.Dy()
	newW, newH := resizedSize(w, h, size)
	left, top := cropOffset(newW, size), cropOffset(newH, size)
	// Output column i of the resize covers source [i, i+1) * w/newW.
	edge := func(i, n, newN int) int { return int(math.Round(float64(i) * float64(n) / float64(newN))) }
	seen := frame.Box{
		X1: box.X1 + edge(left, w, newW), X2: box.X1 + edge(left+size, w, newW),
		Y1: box.Y1 + edge(top, h, newH), Y2: box.Y1 + edge(top+size, h, newH),
	}
	return Coverage{FrameWidth: width, FrameHeight: height, Box: box, Seen: seen}, nil
}

// Percent is the share of the frame's area that Seen covers.
func (c Coverage) Percent() float64 {
	return 100 * float64(c.Seen.Dx()*c.Seen.Dy()) / float64(c.FrameWidth*c.FrameHeight)
}

// String reads like "1280x720 → centre 720x720 classified (56 % of the
// frame)"; a box that is not the whole frame says where it is, and one
// that the centre crop keeps whole says so.
func (c Coverage) String() string {
	s := fmt.Sprintf("%dx%d", c.Box.Dx(), c.Box.Dy())
	if c.Box != frame.Full(c.FrameWidth, c.FrameHeight) {
		s += fmt.Sprintf(" at %d,%d", c.Box.X1, c.Box.Y1)
	}
	if c.Seen == c.Box {
		s += " → all of it classified"
	} else {
		s += fmt.Sprintf(" → centre %dx%d classified", c.Seen.Dx(), c.Seen.Dy())
	}
	pct := c.Percent()
	prec := 0
	if pct < 9.95 {
		prec = 1
	}
	return s + fmt.Sprintf(" (%.*f %% of the frame)", prec, pct)
}

package frame

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MinSide is the smallest width and height of a region, in pixels: below
// it a crop is mostly what the resize to CLIP's input invents.
const MinSide = 16

// Box is a rectangle of a frame in pixels of the delivered frame, half-open
// like Pillow's Image.crop box: columns X1..X2-1 and rows Y1..Y2-1.
type Box struct{ X1, Y1, X2, Y2 int }

// Full is the box of a whole width×height frame.
func Full(width, height int) Box { return Box{0, 0, width, height} }

// Bounds is the box of the whole frame.
func (f *Frame) Bounds() Box { return Full(f.Width, f.Height) }

// Dx is the width of b.
func (b Box) Dx() int { return b.X2 - b.X1 }

// Dy is the height of b.
func (b Box) Dy() int { return b.Y2 - b.Y1 }

// String is the form ParseBox reads: "x1,y1,x2,y2".
func (b Box) String() string { return fmt.Sprintf("%d,%d,%d,%d", b.X1, b.Y1, b.X2, b.Y2) }

// ParseBox reads "x1,y1,x2,y2" (four integers; spaces around them are
// allowed). It checks the syntax only; see Within and Validate.
func ParseBox(s string) (Box, error) {
	parts := strings.Split(s, ",")
	var v [4]int
	ok := len(parts) == 4
	for i := 0; ok && i < 4; i++ {
		n, err := strconv.Atoi(strings.TrimSpace(parts[i]))
		ok = err == nil
		v[i] = n
	}
	if !ok {
		return Box{}, fmt.Errorf("box %s: want x1,y1,x2,y2 as four integers", quoteShort(s))
	}
	return Box{v[0], v[1], v[2], v[3]}, nil
}

// quoteShort quotes s, cut to a length fit for an error message.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}

// shape checks what holds for any box whatever the frame: no negative
// coordinate, x2 right of x1, y2 below y1.
func (b Box) shape() error {
	names := [4]string{"x1", "y1", "x2", "y2"}
	for i, v := range [4]int{b.X1, b.Y1, b.X2, b.Y2} {
		if v < 0 {
			return fmt.Errorf("box %v is out of range: %s %d is negative", b, names[i], v)
		}
	}
	switch {
	case b.X2 == b.X1:
		return fmt.Errorf("box %v is empty: x1 and x2 are both %d", b, b.X1)
	case b.Y2 == b.Y1:
		return fmt.Errorf("box %v is empty: y1 and y2 are both %d", b, b.Y1)
	case b.X2 < b.X1:
		return fmt.Errorf("box %v is inverted: x2 %d is left of x1 %d", b, b.X2, b.X1)
	case b.Y2 < b.Y1:
		return fmt.Errorf("box %v is inverted: y2 %d is above y1 %d", b, b.Y2, b.Y1)
	}
	return nil
}

// Within says whether b is a non-empty box of a width×height frame. It is
// the rule for any crop; a region must also pass Validate.
func (b Box) Within(width, height int) error {
	if err := b.shape(); err != nil {
		return err
	}
	if b.X2 > width {
		return fmt.Errorf("box %v is out of range: x2 %d is beyond the %dx%d frame's width", b, b.X2, width, height)
	}
	if b.Y2 > height {
		return fmt.Errorf("box %v is out of range: y2 %d is beyond the %dx%d frame's height", b, b.Y2, width, height)
	}
	return nil
}

// Validate checks b as a region's box without knowing the frame's size:
// the shape rules of Within and at least MinSide pixels on each side.
func (b Box) Validate() error {
	if err := b.shape(); err != nil {
		return err
	}
	return b.minSide()
}

// ValidateIn checks b as a region's box of a width×height frame.
func (b Box) ValidateIn(width, height int) error {
	if err := b.Within(width, height); err != nil {
		return err
	}
	return b.minSide()
}

func (b Box) minSide() error {
	if b.Dx() < MinSide || b.Dy() < MinSide {
		return fmt.Errorf("box %v is %dx%d pixels, smaller than the minimum of %d on a side", b, b.Dx(), b.Dy(), MinSide)
	}
	return nil
}

// Rect is a box as fractions of the frame's width and height, x1, y1, x2,
// y2 (Frigate's convention), so that it holds whatever size the camera
// delivers.
type Rect [4]float64

func (r Rect) String() string {
	s := make([]string, 4)
	for i, v := range r {
		s[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// Validate checks the rules that do not depend on the frame's size: every
// value within 0..1, x2 right of x1 and y2 below y1.
func (r Rect) Validate() error {
	names := [4]string{"x1", "y1", "x2", "y2"}
	for i, v := range r {
		// Written so that NaN fails too.
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("rect %v is out of range: %s %v is outside 0..1", r, names[i], v)
		}
	}
	switch {
	case r[2] == r[0]:
		return fmt.Errorf("rect %v is empty: x1 and x2 are both %v", r, r[0])
	case r[3] == r[1]:
		return fmt.Errorf("rect %v is empty: y1 and y2 are both %v", r, r[1])
	case r[2] < r[0]:
		return fmt.Errorf("rect %v is inverted: x2 %v is left of x1 %v", r, r[2], r[0])
	case r[3] < r[1]:
		return fmt.Errorf("rect %v is inverted: y2 %v is above y1 %v", r, r[3], r[1])
	}
	return nil
}

// Pixels converts r to the pixels of a width×height frame: each edge
// rounded to the nearest pixel, halves away from zero, and clamped to the
// frame. It does not validate; see Box.
func (r Rect) Pixels(width, height int) Box {
	edge := func(v float64, n int) int {
		p := math.Round(v * float64(n))
		switch {
		case !(p >= 0): // NaN as well
			return 0
		case p > float64(n):
			return n
		}
		return int(p)
	}
	return Box{edge(r[0], width), edge(r[1], height), edge(r[2], width), edge(r[3], height)}
}

// Box validates r and converts it to a region's box of a width×height
// frame, which must have at least MinSide pixels on each side.
func (r Rect) Box(width, height int) (Box, error) {
	if err := r.Validate(); err != nil {
		return Box{}, err
	}
	b := r.Pixels(width, height)
	if b.Dx() < MinSide || b.Dy() < MinSide {
		return b, fmt.Errorf("rect %v is %dx%d pixels of the %dx%d frame (box %v), smaller than the minimum of %d on a side",
			r, b.Dx(), b.Dy(), width, height, b, MinSide)
	}
	return b, nil
}

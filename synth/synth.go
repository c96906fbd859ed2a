// Package synth renders the synthetic world that clipd's demo CLIP model is
// trained on and that the `pattern` capture source shows as a camera: a few
// coloured geometric shapes on a plain, gradient, noisy or cluttered
// background, with mild sensor noise and soft edges.
//
// A scene is a pure function of its seed and Options, so training data,
// evaluation scenes and camera frames can be regenerated anywhere, and every
// scene comes with its ground truth (Truth).
//
// The vocabulary is deliberately unambiguous so that captions are true:
// shapes are filled with saturated colours (or near-white / near-black),
// while backgrounds and clutter use only muted mid-grey tones (never white,
// black or a saturated hue) and clutter is thin open strokes and specks,
// never a filled or closed figure that could be mistaken for a shape.
package synth

import (
	"fmt"
	"math"
)

// ShapeKinds are the shape names, in the order captions and label sets use.
var ShapeKinds = []string{"circle", "square", "triangle", "star", "ring", "cross"}

// ColorNames are the fill colour names, in a fixed order.
var ColorNames = []string{"red", "green", "blue", "yellow", "orange", "purple", "white", "black"}

// SizeNames are the three size classes a shape is drawn in.
var SizeNames = []string{"small", "medium", "large"}

// BackgroundKinds are the background styles.
var BackgroundKinds = []string{"plain", "gradient", "noise", "clutter"}

// colorRGB is the nominal fill of each entry of ColorNames. Each drawn shape
// jitters it a little so a model learns a colour region, not one value.
var colorRGB = [][3]uint8{
	{220, 30, 35},   // red
	{35, 165, 55},   // green
	{35, 70, 215},   // blue
	{240, 215, 35},  // yellow
	{245, 135, 20},  // orange
	{135, 45, 175},  // purple
	{245, 245, 245}, // white
	{22, 22, 22},    // black
}

// ColorRGB returns the nominal RGB fill of a colour name.
func ColorRGB(name string) ([3]uint8, bool) {
	i := indexOf(ColorNames, name)
	if i < 0 {
		return [3]uint8{}, false
	}
	return colorRGB[i], true
}

// sizeRange is the outer radius of each size class as a fraction of the
// shorter image side.
var sizeRange = [][2]float64{{0.09, 0.12}, {0.14, 0.18}, {0.21, 0.26}}

// Pair is one colour×shape combination.
type Pair struct{ Color, Kind string }

func (p Pair) String() string { return p.Color + " " + p.Kind }

// HeldOut are the colour×shape pairs that the demo model never sees, in
// images or captions, during training: each of the six shapes and six of the
// eight colours appear once, so every held-out pair is a new combination of
// a colour and a shape the model knows from other pairs.
var HeldOut = []Pair{
	{"red", "star"}, {"green", "ring"}, {"blue", "triangle"},
	{"yellow", "cross"}, {"orange", "square"}, {"purple", "circle"},
}

// AllPairs lists every colour×shape pair, colours major.
func AllPairs() []Pair {
	out := make([]Pair, 0, len(ColorNames)*len(ShapeKinds))
	for _, c := range ColorNames {
		for _, k := range ShapeKinds {
			out = append(out, Pair{c, k})
		}
	}
	return out
}

// Options selects the size of the picture and what a scene may contain. The
// zero value renders 224x224 scenes of one to three shapes of any pair on
// any background, with artefacts.
type Options struct {
	Width, Height int // 0 → 224x224
	// MinShapes and MaxShapes bound the number of shapes (0 → 1 and 3).
	// Fewer are drawn when they do not fit without overlapping.
	MinShapes, MaxShapes int
	// Backgrounds restricts the background styles (nil → all of
	// BackgroundKinds).
	Backgrounds []string
	// Only, when non-empty, restricts every shape to these pairs.
	Only []Pair
	// Exclude lists pairs that are never drawn (e.g. HeldOut for training).
	Exclude []Pair
	// Sizes restricts the size classes (nil → all of SizeNames).
	Sizes []string
	// Clean turns off sensor noise and edge blur (edges stay anti-aliased).
	Clean bool
}

// Validate reports names in o that are not part of the vocabulary and
// restrictions that leave nothing to draw. Render ignores unknown names, so
// callers taking options from users should validate first.
func (o Options) Validate() error {
	if o.Width < 0 || o.Height < 0 {
		return fmt.Errorf("synth: negative size %dx%d", o.Width, o.Height)
	}
	if o.MinShapes < 0 || o.MaxShapes < 0 || (o.MaxShapes > 0 && o.MinShapes > o.MaxShapes) {
		return fmt.Errorf("synth: bad shape count range %d..%d", o.MinShapes, o.MaxShapes)
	}
	for _, b := range o.Backgrounds {
		if indexOf(BackgroundKinds, b) < 0 {
			return fmt.Errorf("synth: unknown background %q (want one of %v)", b, BackgroundKinds)
		}
	}
	for _, s := range o.Sizes {
		if indexOf(SizeNames, s) < 0 {
			return fmt.Errorf("synth: unknown size %q (want one of %v)", s, SizeNames)
		}
	}
	for _, list := range [][]Pair{o.Only, o.Exclude} {
		for _, p := range list {
			if indexOf(ColorNames, p.Color) < 0 || indexOf(ShapeKinds, p.Kind) < 0 {
				return fmt.Errorf("synth: unknown pair %q (colours %v, shapes %v)", p.String(), ColorNames, ShapeKinds)
			}
		}
	}
	if len(o.allowedPairs()) == 0 {
		return fmt.Errorf("synth: Only and Exclude leave no colour×shape pair to draw")
	}
	return nil
}

func (o Options) size() (int, int) {
	w, h := o.Width, o.Height
	if w <= 0 {
		w = 224
	}
	if h <= 0 {
		h = 224
	}
	return w, h
}

// allowedPairs returns the drawable pairs as indexes into ColorNames and
// ShapeKinds; it falls back to all pairs when the restrictions are unusable.
func (o Options) allowedPairs() [][2]int {
	var out [][2]int
	for ci, c := range ColorNames {
		for ki, k := range ShapeKinds {
			p := Pair{c, k}
			if len(o.Only) > 0 && !containsPair(o.Only, p) {
				continue
			}
			if containsPair(o.Exclude, p) {
				continue
			}
			out = append(out, [2]int{ci, ki})
		}
	}
	return out
}

// Shape is one drawn shape.
type Shape struct {
	Kind  string `json:"kind"`
	Color string `json:"color"`
	Size  string `json:"size"`
	// X and Y are the centre as fractions of the width and height (0,0 is
	// the top left).
	X float64 `json:"x"`
	Y float64 `json:"y"`
	// Rotation is the counter-clockwise rotation in radians from the upright
	// pose (a triangle or star with a point up, a square with level sides).
	Rotation float64 `json:"rotation"`
	// Radius is the outer radius in pixels: every painted pixel lies within
	// it of the centre.
	Radius float64 `json:"radius"`
	// RGB is the exact fill drawn (the nominal colour with jitter).
	RGB [3]uint8 `json:"rgb"`
}

// Filled reports whether the shape's centre pixel is painted with its
// colour (every kind except the ring).
func (s Shape) Filled() bool { return s.Kind != "ring" }

// Position names the ninth of the picture the centre falls in: "top left",
// "top", "top right", "left", "center", "right", "bottom left", "bottom",
// "bottom right".
func (s Shape) Position() string {
	row := [3]string{"top", "", "bottom"}[third(s.Y)]
	col := [3]string{"left", "", "right"}[third(s.X)]
	switch {
	case row == "" && col == "":
		return "center"
	case row == "":
		return col
	case col == "":
		return row
	}
	return row + " " + col
}

func third(v float64) int {
	switch {
	case v < 1.0/3:
		return 0
	case v < 2.0/3:
		return 1
	}
	return 2
}

// Truth is what a scene contains.
type Truth struct {
	Shapes     []Shape `json:"shapes"`
	Background string  `json:"background"`
	Width      int     `json:"width"`
	Height     int     `json:"height"`
}

// Count returns how many shapes match the colour and kind ("" matches any).
func (t Truth) Count(color, kind string) int {
	n := 0
	for _, s := range t.Shapes {
		if (color == "" || s.Color == color) && (kind == "" || s.Kind == kind) {
			n++
		}
	}
	return n
}

// Render draws scene number seed as tightly packed RGB24 (width*3 bytes a
// row). The same seed and options always give the same bytes.
func Render(seed uint64, opt Options) (rgb []byte, truth Truth) {
	w, h := opt.size()
	rgb = make([]byte, w*h*3)
	truth = RenderInto(rgb, seed, opt)
	return rgb, truth
}

// RenderInto draws scene number seed into dst, which must hold
// width*height*3 bytes; it allocates nothing but the returned Truth. A short
// dst is a programming error and panics like an out-of-range slice.
func RenderInto(dst []byte, seed uint64, opt Options) Truth {
	w, h := opt.size()
	need := w * h * 3
	if len(dst) < need {
		panic(fmt.Sprintf("synth: RenderInto needs %d bytes for %dx%d, got %d", need, w, h, len(dst)))
	}
	dst = dst[:need]
	sc := plan(seed, opt, w, h)
	c := canvas{pix: dst, w: w, h: h}
	sc.drawBackground(&c)
	for i := range sc.truth.Shapes {
		c.drawShape(&sc.truth.Shapes[i], sc.softness)
	}
	if sc.noise > 0 {
		c.addNoise(sc.noise, newRNG(seed, 7))
	}
	return sc.truth
}

// scene is a planned picture: everything random is decided here, before any
// pixel is drawn, so planning and drawing can be tested apart.
type scene struct {
	truth    Truth
	bg       background
	softness float64 // edge width in pixels: 1 is plain anti-aliasing, more is blur
	noise    int     // sensor noise amplitude in levels, 0 for none
}

func plan(seed uint64, opt Options, w, h int) scene {
	r := newRNG(seed, 1)
	var sc scene
	sc.truth.Width, sc.truth.Height = w, h

	bgs := filterNames(BackgroundKinds, opt.Backgrounds)
	sc.bg = planBackground(bgs[r.intn(len(bgs))], &r)
	sc.truth.Background = sc.bg.kind

	sc.softness = 1
	if !opt.Clean {
		sc.softness = r.rangef(1, 2.2)
		sc.noise = r.intn(7)
	}

	minN, maxN := opt.MinShapes, opt.MaxShapes
	if minN <= 0 {
		minN = 1
	}
	if maxN <= 0 {
		maxN = 3
	}
	if maxN < minN {
		maxN = minN
	}
	n := minN + r.intn(maxN-minN+1)

	pairs := opt.allowedPairs()
	if len(pairs) == 0 {
		pairs = Options{}.allowedPairs()
	}
	sizes := filterNames(SizeNames, opt.Sizes)
	short := float64(min(w, h))
	sc.truth.Shapes = make([]Shape, 0, n)
	for len(sc.truth.Shapes) < n {
		p := pairs[r.intn(len(pairs))]
		si := indexOf(SizeNames, sizes[r.intn(len(sizes))])
		radius := short * r.rangef(sizeRange[si][0], sizeRange[si][1])
		s := Shape{
			Kind:     ShapeKinds[p[1]],
			Color:    ColorNames[p[0]],
			Size:     SizeNames[si],
			Radius:   radius,
			Rotation: r.float() * symmetryAngle(ShapeKinds[p[1]]),
			RGB:      jitter(colorRGB[p[0]], &r),
		}
		if !place(&s, sc.truth.Shapes, w, h, &r) {
			break // the picture is full; fewer shapes is still a valid scene
		}
		sc.truth.Shapes = append(sc.truth.Shapes, s)
	}
	return sc
}

// place picks a centre that keeps the shape inside the picture and apart
// from the shapes already placed, so that each shape is wholly visible and
// the truth about every pixel is unambiguous.
func place(s *Shape, placed []Shape, w, h int, r *rng) bool {
	const margin = 2
	lox, hix := s.Radius+margin, float64(w)-s.Radius-margin
	loy, hiy := s.Radius+margin, float64(h)-s.Radius-margin
	if lox >= hix || loy >= hiy {
		return false
	}
	for try := 0; try < 40; try++ {
		x, y := r.rangef(lox, hix), r.rangef(loy, hiy)
		ok := true
		for _, o := range placed {
			dx, dy := x-o.X*float64(w), y-o.Y*float64(h)
			if math.Hypot(dx, dy) < s.Radius+o.Radius+2*margin {
				ok = false
				break
			}
		}
		if ok {
			s.X, s.Y = x/float64(w), y/float64(h)
			return true
		}
	}
	return false
}

// symmetryAngle is the rotation after which a kind looks the same again, so
// rotations are drawn uniformly from distinct poses.
func symmetryAngle(kind string) float64 {
	switch kind {
	case "square", "cross":
		return math.Pi / 2
	case "triangle":
		return 2 * math.Pi / 3
	case "star":
		return 2 * math.Pi / 5
	}
	return 0
}

func jitter(c [3]uint8, r *rng) [3]uint8 {
	var out [3]uint8
	for i, v := range c {
		out[i] = clamp8(float64(v) + r.rangef(-14, 14))
	}
	return out
}

func clamp8(v float64) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func containsPair(list []Pair, p Pair) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// filterNames keeps the entries of all that appear in want, in all's order;
// an empty or fully unknown want means all.
func filterNames(all, want []string) []string {
	if len(want) == 0 {
		return all
	}
	var out []string
	for _, a := range all {
		if indexOf(want, a) >= 0 {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

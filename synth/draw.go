package synth

import "math"

type canvas struct {
	pix  []byte
	w, h int
}

// background is a planned background: tones are muted (grey with a small
// tint, level 80..180) so that neither "white", "black" nor any saturated
// colour name could describe it.
type background struct {
	kind   string
	a, b   [3]float64 // tones: plain uses a; gradient goes a → b
	dirX   float64    // gradient direction (unit vector)
	dirY   float64
	grid   [5][5][3]float64 // coarse value noise for "noise"
	fine   int              // per-pixel noise amplitude for "noise"
	seed   uint64
	stroke int // number of clutter strokes
}

func mutedTone(r *rng) [3]float64 {
	g := r.rangef(80, 180)
	return [3]float64{g + r.rangef(-16, 16), g + r.rangef(-16, 16), g + r.rangef(-16, 16)}
}

func planBackground(kind string, r *rng) background {
	bg := background{kind: kind, a: mutedTone(r), b: mutedTone(r), seed: r.next()}
	ang := r.angle()
	bg.dirX, bg.dirY = math.Cos(ang), math.Sin(ang)
	switch kind {
	case "noise":
		for i := range bg.grid {
			for j := range bg.grid[i] {
				bg.grid[i][j] = mutedTone(r)
			}
		}
		bg.fine = 10 + r.intn(20)
	case "clutter":
		bg.stroke = 10 + r.intn(16)
	}
	return bg
}

func (sc *scene) drawBackground(c *canvas) {
	bg := &sc.bg
	switch bg.kind {
	case "gradient", "clutter":
		c.fillGradient(bg.a, bg.b, bg.dirX, bg.dirY)
	case "noise":
		c.fillValueNoise(&bg.grid)
		c.addNoise(bg.fine, newRNG(bg.seed, 3))
	default:
		c.fillPlain(bg.a)
	}
	if bg.kind == "clutter" {
		c.drawClutter(bg, sc.softness)
	}
}

func (c *canvas) fillPlain(t [3]float64) {
	px := [3]byte{clamp8(t[0]), clamp8(t[1]), clamp8(t[2])}
	row := c.pix[:c.w*3]
	for x := 0; x < c.w; x++ {
		copy(row[x*3:], px[:])
	}
	for y := 1; y < c.h; y++ {
		copy(c.pix[y*c.w*3:(y+1)*c.w*3], row)
	}
}

// fillGradient is linear in the position projected on (dx, dy), scaled so the
// full a → b range spans the picture.
func (c *canvas) fillGradient(a, b [3]float64, dx, dy float64) {
	w, h := float64(c.w), float64(c.h)
	// Projections of the four corners bound the range of t.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range [4][2]float64{{0, 0}, {w, 0}, {0, h}, {w, h}} {
		t := p[0]*dx + p[1]*dy
		lo, hi = math.Min(lo, t), math.Max(hi, t)
	}
	scale := 1 / (hi - lo)
	for y := 0; y < c.h; y++ {
		t0 := ((float64(y)+0.5)*dy + 0.5*dx - lo) * scale
		step := dx * scale
		row := c.pix[y*c.w*3 : (y+1)*c.w*3]
		for x := 0; x < c.w; x++ {
			t := t0 + float64(x)*step
			row[x*3] = clamp8(a[0] + (b[0]-a[0])*t)
			row[x*3+1] = clamp8(a[1] + (b[1]-a[1])*t)
			row[x*3+2] = clamp8(a[2] + (b[2]-a[2])*t)
		}
	}
}

// fillValueNoise interpolates a 5x5 grid of tones bilinearly: large soft
// blotches, on top of which addNoise puts grain.
func (c *canvas) fillValueNoise(g *[5][5][3]float64) {
	const cells = 4
	for y := 0; y < c.h; y++ {
		fy := (float64(y) + 0.5) / float64(c.h) * cells
		iy := min(int(fy), cells-1)
		ty := fy - float64(iy)
		ty = ty * ty * (3 - 2*ty)
		row := c.pix[y*c.w*3 : (y+1)*c.w*3]
		for x := 0; x < c.w; x++ {
			fx := (float64(x) + 0.5) / float64(c.w) * cells
			ix := min(int(fx), cells-1)
			tx := fx - float64(ix)
			tx = tx * tx * (3 - 2*tx)
			for ch := 0; ch < 3; ch++ {
				top := g[iy][ix][ch] + (g[iy][ix+1][ch]-g[iy][ix][ch])*tx
				bot := g[iy+1][ix][ch] + (g[iy+1][ix+1][ch]-g[iy+1][ix][ch])*tx
				row[x*3+ch] = clamp8(top + (bot-top)*ty)
			}
		}
	}
}

// drawClutter draws thin straight strokes and tiny specks in muted tones that
// differ from the background: texture that must be ignored, never something
// that could be called a shape or a colour.
func (c *canvas) drawClutter(bg *background, softness float64) {
	r := newRNG(bg.seed, 5)
	short := float64(min(c.w, c.h))
	for i := 0; i < bg.stroke; i++ {
		tone := mutedTone(&r)
		col := [3]uint8{clamp8(tone[0]), clamp8(tone[1]), clamp8(tone[2])}
		x0, y0 := r.float()*float64(c.w), r.float()*float64(c.h)
		if r.intn(3) == 0 {
			// a speck: a very short thick dash
			l := short * r.rangef(0.008, 0.02)
			a := r.angle()
			c.drawSegment(x0, y0, x0+l*math.Cos(a), y0+l*math.Sin(a), short*0.008+0.5, col, softness)
			continue
		}
		l := short * r.rangef(0.1, 0.35)
		a := r.angle()
		c.drawSegment(x0, y0, x0+l*math.Cos(a), y0+l*math.Sin(a), short*r.rangef(0.002, 0.006)+0.4, col, softness)
	}
}

func (c *canvas) drawSegment(x0, y0, x1, y1, half float64, col [3]uint8, soft float64) {
	pad := half + soft
	bx0, by0 := int(math.Floor(math.Min(x0, x1)-pad)), int(math.Floor(math.Min(y0, y1)-pad))
	bx1, by1 := int(math.Ceil(math.Max(x0, x1)+pad)), int(math.Ceil(math.Max(y0, y1)+pad))
	bx0, by0 = max(bx0, 0), max(by0, 0)
	bx1, by1 = min(bx1, c.w-1), min(by1, c.h-1)
	dx, dy := x1-x0, y1-y0
	ll := dx*dx + dy*dy
	inv := 1 / soft
	for y := by0; y <= by1; y++ {
		py := float64(y) + 0.5
		for x := bx0; x <= bx1; x++ {
			px := float64(x) + 0.5
			t := ((px-x0)*dx + (py-y0)*dy) / ll
			t = math.Max(0, math.Min(1, t))
			ex, ey := px-(x0+t*dx), py-(y0+t*dy)
			d := math.Sqrt(ex*ex+ey*ey) - half
			c.blend(x, y, col, 0.5-d*inv)
		}
	}
}

// blend mixes col into pixel (x, y) with coverage alpha (clamped to 0..1).
func (c *canvas) blend(x, y int, col [3]uint8, alpha float64) {
	if alpha <= 0 {
		return
	}
	i := (y*c.w + x) * 3
	p := c.pix[i : i+3 : i+3]
	if alpha >= 1 {
		p[0], p[1], p[2] = col[0], col[1], col[2]
		return
	}
	for ch := 0; ch < 3; ch++ {
		v := float64(p[ch])
		p[ch] = uint8(v + (float64(col[ch])-v)*alpha + 0.5)
	}
}

// addNoise adds triangular noise of amplitude amp levels to every byte.
func (c *canvas) addNoise(amp int, r rng) {
	pix := c.pix
	for i := 0; i < len(pix); i += 8 {
		bits := r.next()
		end := min(i+8, len(pix))
		for j := i; j < end; j++ {
			b := int(bits & 0xff)
			bits >>= 8
			n := ((b & 15) + (b >> 4) - 15) * amp / 15
			v := int(pix[j]) + n
			if v < 0 {
				v = 0
			} else if v > 255 {
				v = 255
			}
			pix[j] = byte(v)
		}
	}
}

// Shape geometry, relative to the outer radius R.
const (
	ringMid       = 0.78 // ring centre line
	ringHalfWidth = 0.22 // so the hole has radius 0.56 R
	squareHalf    = 0.74
	crossArmHalf  = 0.26
	starInner     = 0.45
)

// drawShape paints s with anti-aliased edges from a signed distance field;
// softness widens the edge ramp to imitate focus blur.
func (c *canvas) drawShape(s *Shape, softness float64) {
	cx, cy := s.X*float64(c.w), s.Y*float64(c.h)
	R := s.Radius
	pad := R + softness
	bx0, by0 := max(int(math.Floor(cx-pad)), 0), max(int(math.Floor(cy-pad)), 0)
	bx1, by1 := min(int(math.Ceil(cx+pad)), c.w-1), min(int(math.Ceil(cy+pad)), c.h-1)
	// Local coordinates: rotate the pixel offset by -Rotation. Image y grows
	// downwards, so a counter-clockwise rotation on screen is +angle with y
	// flipped.
	cos, sin := math.Cos(s.Rotation), math.Sin(s.Rotation)
	var poly [10][2]float64
	npoly := 0
	switch s.Kind {
	case "triangle":
		npoly = 3
		for i := 0; i < 3; i++ {
			a := math.Pi/2 + float64(i)*2*math.Pi/3
			poly[i] = [2]float64{R * math.Cos(a), R * math.Sin(a)}
		}
	case "star":
		npoly = 10
		for i := 0; i < 10; i++ {
			rad := R
			if i%2 == 1 {
				rad = R * starInner
			}
			a := math.Pi/2 + float64(i)*math.Pi/5
			poly[i] = [2]float64{rad * math.Cos(a), rad * math.Sin(a)}
		}
	}
	inv := 1 / softness
	outer := (R + softness) * (R + softness)
	for y := by0; y <= by1; y++ {
		dy := float64(y) + 0.5 - cy
		for x := bx0; x <= bx1; x++ {
			dx := float64(x) + 0.5 - cx
			if dx*dx+dy*dy > outer {
				continue
			}
			// u right, v up, in the shape's own frame.
			u := dx*cos - dy*sin
			v := -(dx*sin + dy*cos)
			var d float64
			switch s.Kind {
			case "circle":
				d = math.Sqrt(u*u+v*v) - R
			case "ring":
				d = math.Abs(math.Sqrt(u*u+v*v)-ringMid*R) - ringHalfWidth*R
			case "square":
				d = sdBox(u, v, squareHalf*R, squareHalf*R)
			case "cross":
				d = math.Min(sdBox(u, v, R*0.95, crossArmHalf*R), sdBox(u, v, crossArmHalf*R, R*0.95))
			default:
				d = sdPolygon(u, v, poly[:npoly])
			}
			c.blend(x, y, s.RGB, 0.5-d*inv)
		}
	}
}

func sdBox(u, v, hx, hy float64) float64 {
	qx, qy := math.Abs(u)-hx, math.Abs(v)-hy
	out := math.Hypot(math.Max(qx, 0), math.Max(qy, 0))
	return out + math.Min(math.Max(qx, qy), 0)
}

// sdPolygon is the exact signed distance to a simple polygon (negative
// inside), by nearest edge and crossing parity.
func sdPolygon(u, v float64, p [][2]float64) float64 {
	best := math.Inf(1)
	inside := false
	j := len(p) - 1
	for i := range p {
		ax, ay := p[j][0], p[j][1]
		bx, by := p[i][0], p[i][1]
		ex, ey := bx-ax, by-ay
		wx, wy := u-ax, v-ay
		t := (wx*ex + wy*ey) / (ex*ex + ey*ey)
		t = math.Max(0, math.Min(1, t))
		qx, qy := wx-ex*t, wy-ey*t
		if d := qx*qx + qy*qy; d < best {
			best = d
		}
		if (ay > v) != (by > v) && u < ax+(v-ay)*ex/ey {
			inside = !inside
		}
		j = i
	}
	d := math.Sqrt(best)
	if inside {
		return -d
	}
	return d
}

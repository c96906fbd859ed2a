package synth

import (
	"bytes"
	"math"
	"testing"
)

func TestRenderIsDeterministicPerSeed(t *testing.T) {
	opt := Options{Width: 160, Height: 120}
	for seed := uint64(0); seed < 20; seed++ {
		a, ta := Render(seed, opt)
		b, tb := Render(seed, opt)
		if !bytes.Equal(a, b) {
			t.Fatalf("seed %d: two renders differ", seed)
		}
		if len(ta.Shapes) != len(tb.Shapes) || ta.Background != tb.Background {
			t.Fatalf("seed %d: truths differ: %+v vs %+v", seed, ta, tb)
		}
		dst := bytes.Repeat([]byte{7}, len(a))
		RenderInto(dst, seed, opt)
		if !bytes.Equal(a, dst) {
			t.Fatalf("seed %d: RenderInto into a dirty buffer differs from Render", seed)
		}
	}
	a, _ := Render(1, opt)
	b, _ := Render(2, opt)
	if bytes.Equal(a, b) {
		t.Fatal("seeds 1 and 2 render the same picture")
	}
}

func pixel(rgb []byte, w int, x, y float64) [3]int {
	i := (int(y)*w + int(x)) * 3
	return [3]int{int(rgb[i]), int(rgb[i+1]), int(rgb[i+2])}
}

func colorDist(a [3]int, b [3]uint8) int {
	d := 0
	for i := range a {
		d = max(d, abs(a[i]-int(b[i])))
	}
	return d
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// The truth must describe the pixels: a filled shape's centre shows its
// colour (within sensor noise), a ring's centre shows the background through
// its hole, and every shape lies inside the picture.
func TestTruthMatchesPixels(t *testing.T) {
	const w, h = 224, 168
	kinds := map[string]int{}
	for seed := uint64(0); seed < 400; seed++ {
		rgb, truth := Render(seed, Options{Width: w, Height: h})
		if len(truth.Shapes) == 0 {
			t.Fatalf("seed %d: no shapes", seed)
		}
		for _, s := range truth.Shapes {
			kinds[s.Kind]++
			cx, cy := s.X*w, s.Y*h
			if cx-s.Radius < 0 || cx+s.Radius > w || cy-s.Radius < 0 || cy+s.Radius > h {
				t.Fatalf("seed %d: %s %s at (%.1f,%.1f) r=%.1f leaves the picture", seed, s.Color, s.Kind, cx, cy, s.Radius)
			}
			got := pixel(rgb, w, cx, cy)
			d := colorDist(got, s.RGB)
			if s.Filled() && d > 8 {
				t.Errorf("seed %d: centre of %s %s is %v, want about %v", seed, s.Color, s.Kind, got, s.RGB)
			}
			if !s.Filled() && d < 25 {
				t.Errorf("seed %d: centre of %s ring is %v, too close to the ring colour %v", seed, s.Color, got, s.RGB)
			}
		}
	}
	for _, k := range ShapeKinds {
		if kinds[k] < 20 {
			t.Errorf("kind %s drawn only %d times in 400 scenes", k, kinds[k])
		}
	}
}

// Outside the shapes the picture must hold only muted background tones, so
// that no caption word can describe the background.
func TestBackgroundIsMuted(t *testing.T) {
	const w, h = 128, 128
	for seed := uint64(0); seed < 200; seed++ {
		rgb, truth := Render(seed, Options{Width: w, Height: h})
		for y := 0; y < h; y += 3 {
			for x := 0; x < w; x += 3 {
				near := false
				for _, s := range truth.Shapes {
					if math.Hypot(float64(x)+0.5-s.X*w, float64(y)+0.5-s.Y*h) < s.Radius+3 {
						near = true
					}
				}
				if near {
					continue
				}
				p := pixel(rgb, w, float64(x), float64(y))
				lo, hi := min(p[0], p[1], p[2]), max(p[0], p[1], p[2])
				if hi-lo > 80 || lo < 30 || hi > 225 {
					t.Fatalf("seed %d (%s): background pixel (%d,%d)=%v is not a muted tone", seed, truth.Background, x, y, p)
				}
			}
		}
	}
}

func TestOptionsRestrictTheScene(t *testing.T) {
	opt := Options{Width: 96, Height: 96, MinShapes: 2, MaxShapes: 2, Exclude: HeldOut,
		Backgrounds: []string{"clutter"}, Sizes: []string{"small"}}
	if err := opt.Validate(); err != nil {
		t.Fatal(err)
	}
	for seed := uint64(0); seed < 300; seed++ {
		_, truth := Render(seed, opt)
		if truth.Background != "clutter" {
			t.Fatalf("seed %d: background %s", seed, truth.Background)
		}
		if len(truth.Shapes) != 2 {
			t.Fatalf("seed %d: %d shapes, want 2", seed, len(truth.Shapes))
		}
		for _, s := range truth.Shapes {
			if containsPair(HeldOut, Pair{s.Color, s.Kind}) {
				t.Fatalf("seed %d: excluded pair %s %s drawn", seed, s.Color, s.Kind)
			}
			if s.Size != "small" {
				t.Fatalf("seed %d: size %s", seed, s.Size)
			}
		}
	}
	only := Options{Only: HeldOut[:2], MaxShapes: 1}
	for seed := uint64(0); seed < 50; seed++ {
		_, truth := Render(seed, only)
		if p := (Pair{truth.Shapes[0].Color, truth.Shapes[0].Kind}); !containsPair(HeldOut[:2], p) {
			t.Fatalf("seed %d: Only violated by %s", seed, p)
		}
	}
}

func TestValidateNamesTheProblem(t *testing.T) {
	for _, tc := range []struct {
		opt  Options
		want string
	}{
		{Options{Backgrounds: []string{"sky"}}, `"sky"`},
		{Options{Sizes: []string{"huge"}}, `"huge"`},
		{Options{Only: []Pair{{"pink", "circle"}}}, `"pink circle"`},
		{Options{Only: []Pair{{"red", "star"}}, Exclude: []Pair{{"red", "star"}}}, "no colour×shape pair"},
		{Options{MinShapes: 3, MaxShapes: 2}, "3..2"},
	} {
		err := tc.opt.Validate()
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("Validate(%+v) = %v, want an error mentioning %s", tc.opt, err, tc.want)
		}
	}
}

func TestPosition(t *testing.T) {
	for _, tc := range []struct {
		x, y float64
		want string
	}{{0.1, 0.1, "top left"}, {0.5, 0.5, "center"}, {0.9, 0.5, "right"}, {0.5, 0.9, "bottom"}, {0.8, 0.2, "top right"}} {
		if got := (Shape{X: tc.x, Y: tc.y}).Position(); got != tc.want {
			t.Errorf("Position(%v,%v) = %q, want %q", tc.x, tc.y, got, tc.want)
		}
	}
}

func BenchmarkRender640x480(b *testing.B) {
	opt := Options{Width: 640, Height: 480}
	dst := make([]byte, 640*480*3)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		RenderInto(dst, uint64(i), opt)
	}
}

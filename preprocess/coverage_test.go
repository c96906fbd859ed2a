package preprocess

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/clipd/clipd/frame"
)

func TestCoverage(t *testing.T) {
	cases := []struct {
		w, h int
		box  frame.Box
		seen frame.Box
		text string
	}{
		{1280, 720, frame.Full(1280, 720), bx(280, 0, 1000, 720), "1280x720 → centre 720x720 classified (56 % of the frame)"},
		{1280, 720, bx(0, 0, 720, 720), bx(0, 0, 720, 720), "720x720 at 0,0 → all of it classified (56 % of the frame)"},
		{1280, 720, bx(560, 0, 1280, 720), bx(560, 0, 1280, 720), "720x720 at 560,0 → all of it classified (56 % of the frame)"},
		{1280, 720, bx(560, 360, 880, 600), bx(600, 360, 840, 600), "320x240 at 560,360 → centre 240x240 classified (6.2 % of the frame)"},
		// 640 rows become int(298.67) = 298, so the 224 kept are 481.1
		// source rows, 79.46..560.5.
		{480, 640, frame.Full(480, 640), bx(0, 79, 480, 561), "480x640 → centre 480x482 classified (75 % of the frame)"},
		{224, 224, frame.Full(224, 224), frame.Full(224, 224), "224x224 → all of it classified (100 % of the frame)"},
		// Upscaled: 101x67 becomes 337x224, of which columns 56..280 are kept.
		{640, 480, bx(11, 21, 112, 88), bx(28, 21, 95, 88), "101x67 at 11,21 → centre 67x67 classified (1.5 % of the frame)"},
	}
	for _, c := range cases {
		cov, err := CoverageOf(c.box, c.w, c.h, 224)
		if err != nil {
			t.Fatal(err)
		}
		if cov.Seen != c.seen || cov.String() != c.text {
			t.Errorf("%dx%d box %v: seen %v %q, want %v %q", c.w, c.h, c.box, cov.Seen, cov, c.seen, c.text)
		}
	}
	if _, err := CoverageOf(bx(0, 0, 1300, 720), 1280, 720, 224); err == nil {
		t.Error("a box beyond the frame has a coverage")
	}
}

// TestCoverageIsWhatTheTensorShows: pixels outside Seen, beyond the reach
// of the bicubic kernel, do not change the tensor; pixels inside it do.
func TestCoverageIsWhatTheTensorShows(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	w, h := 640, 360
	f := &frame.Frame{Format: frame.RGB24, Width: w, Height: h, Data: make([]byte, w*h*3)}
	for i := range f.Data {
		f.Data[i] = byte(rng.Uint32())
	}
	p := New(DefaultConfig())
	defer p.Close()
	for _, box := range []frame.Box{f.Bounds(), bx(33, 17, 33+301, 17+150), bx(40, 0, 40+100, 360), bx(3, 5, 3+60, 5+70)} {
		cov, err := CoverageOf(box, w, h, 224)
		if err != nil {
			t.Fatal(err)
		}
		// The kernel reaches 2 source pixels at scale 1, more when shrinking.
		bw, bh := box.Dx(), box.Dy()
		newW, newH := resizedSize(bw, bh, 224)
		mx := int(math.Ceil(2*max(float64(bw)/float64(newW), 1))) + 1
		my := int(math.Ceil(2*max(float64(bh)/float64(newH), 1))) + 1
		reach := bx(cov.Seen.X1-mx, cov.Seen.Y1-my, cov.Seen.X2+mx, cov.Seen.Y2+my)

		before := make([]uint8, p.TensorLen())
		after := make([]uint8, p.TensorLen())
		if err := p.FrameBoxesUint8(f, []frame.Box{box}, [][]uint8{before}); err != nil {
			t.Fatal(err)
		}
		g := &frame.Frame{Format: frame.RGB24, Width: w, Height: h, Data: append([]byte{}, f.Data...)}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				if x < reach.X1 || x >= reach.X2 || y < reach.Y1 || y >= reach.Y2 {
					g.Data[(y*w+x)*3] ^= 0xFF
				}
			}
		}
		if err := p.FrameBoxesUint8(g, []frame.Box{box}, [][]uint8{after}); err != nil {
			t.Fatal(err)
		}
		if bad := countDiff(before, after); bad > 0 {
			t.Errorf("box %v: changing pixels outside %v (seen %v) changed %d values", box, reach, cov.Seen, bad)
		}
		mid := (cov.Seen.X1 + cov.Seen.X2) / 2
		for y := cov.Seen.Y1; y < cov.Seen.Y2; y++ {
			g.Data[(y*w+mid)*3+1] ^= 0xFF
		}
		if err := p.FrameBoxesUint8(g, []frame.Box{box}, [][]uint8{after}); err != nil {
			t.Fatal(err)
		}
		if countDiff(before, after) == 0 {
			t.Errorf("box %v: changing column %d inside the seen part changed nothing", box, mid)
		}
	}
}

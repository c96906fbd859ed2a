package preprocess

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/jpegturbo"
)

// bx is a frame.Box, shorter.
func bx(x1, y1, x2, y2 int) frame.Box { return frame.Box{X1: x1, Y1: y1, X2: x2, Y2: y2} }

// testBoxes are the crops the exactness tests take of a w×h image: odd
// offsets, 1-pixel margins on every side, landscape and portrait crops,
// crops smaller than size (upscaled) and larger, one side exactly size (no
// resize of that axis), size×size (no resize at all), thin strips and the
// left and right squares of a wide image.
func testBoxes(w, h, size int) []frame.Box {
	cands := []frame.Box{
		bx(1, 1, w-1, h-1),
		bx(1, 0, w, h), bx(0, 1, w, h), bx(0, 0, w-1, h), bx(0, 0, w, h-1),
		bx(w/7|1, h/5|1, w/7|1+w*2/3, h/5|1+h*2/5),                // landscape at odd offsets
		bx(w/3|1, 3, (w/3|1+max(w/5, 2))|1, h-2),                  // portrait
		bx(w/2|1, h/3|1, w/2|1+min(101, w/3), h/3|1+min(67, h/2)), // small: upscaled
		bx(5, 3, 5+size, 3+size),
		bx(7, 1, 7+size, 1+size+37),
		bx(3, 9, 3+size+51, 9+size),
		// Thin strips, kept short: Pillow resizes all of a strip that the
		// resize makes thousands of pixels long.
		bx(w-1-17, 2, w-1, min(h-3, 402)),
		bx(0, h-19, min(w, 500), h),
	}
	if w > h {
		cands = append(cands, bx(0, 0, h, h), bx(w-h, 0, w, h))
	} else if h > w {
		cands = append(cands, bx(0, 0, w, w), bx(0, h-w, w, h))
	}
	var boxes []frame.Box
	seen := map[frame.Box]bool{}
	for _, b := range cands {
		if b.Within(w, h) == nil && !seen[b] {
			seen[b] = true
			boxes = append(boxes, b)
		}
	}
	return boxes
}

// pillowCrops runs pillow_crops.py on jobs and returns, in order, the
// uint8 tensors it computed.
type cropJob struct {
	image string
	box   frame.Box
	size  int
}

func pillowCrops(t *testing.T, python string, jobs []cropJob) [][]uint8 {
	t.Helper()
	dir := t.TempDir()
	var in strings.Builder
	for i, j := range jobs {
		fmt.Fprintf(&in, "%s\t%s\t%d\t%s\n", j.image, j.box, j.size, filepath.Join(dir, strconv.Itoa(i)+".u8"))
	}
	cmd := exec.Command(python, filepath.Join("testdata", "pillow_crops.py"))
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pillow_crops.py: %v\n%s", err, out)
	}
	res := make([][]uint8, len(jobs))
	for i, j := range jobs {
		data, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)+".u8"))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != 3*j.size*j.size {
			t.Fatalf("Pillow result %d has %d bytes", i, len(data))
		}
		res[i] = data
	}
	return res
}

// imageSize reads an image's size with our own decoders.
func imageSize(t *testing.T, path string) (int, int) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := New(DefaultConfig())
	src, err := p.imageSource(data)
	p.Close()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return src.w, src.h
}

// TestCropsMatchPillow compares clip._transform(S)(img.crop(box)) in Pillow
// 9.4 with ImageBoxesUint8 for every reference image and for images in
// every supported Pillow mode, at two output sizes, for the crops of
// testBoxes. Each image's boxes go through one call, one decode.
func TestCropsMatchPillow(t *testing.T) {
	python := pythonWithPillow(t)
	images, _ := filepath.Glob(filepath.Join(sharedDir(t), "reference", "images", "*.[pj][np]g"))
	if len(images) < 16 {
		t.Fatalf("only %d reference images", len(images))
	}
	// Images in the modes the reference set lacks (L, LA, RGBA, 16-bit).
	modes := t.TempDir()
	writeGoPNGs(t, modes)
	if out, err := exec.Command(python, filepath.Join("testdata", "pillow_reference.py"), modes, "8").CombinedOutput(); err != nil {
		t.Fatalf("pillow_reference.py: %v\n%s", err, out)
	}
	extra, _ := filepath.Glob(filepath.Join(modes, "*.[pj][np]g"))
	images = append(images, extra...)

	var jobs []cropJob
	for _, size := range []int{224, 97} {
		for _, img := range images {
			w, h := imageSize(t, img)
			for _, b := range testBoxes(w, h, size) {
				jobs = append(jobs, cropJob{img, b, size})
			}
		}
	}
	want := pillowCrops(t, python, jobs)

	pre := map[int]*Preprocessor{224: New(Config{Size: 224}), 97: New(Config{Size: 97})}
	defer pre[224].Close()
	defer pre[97].Close()
	checked := 0
	for start := 0; start < len(jobs); {
		end := start + 1
		for end < len(jobs) && jobs[end].image == jobs[start].image && jobs[end].size == jobs[start].size {
			end++
		}
		j := jobs[start]
		var boxes []frame.Box
		var dst [][]uint8
		for _, job := range jobs[start:end] {
			boxes = append(boxes, job.box)
			dst = append(dst, make([]uint8, 3*j.size*j.size))
		}
		if err := pre[j.size].FileBoxesUint8(j.image, boxes, dst); err != nil {
			t.Fatalf("size %d: %v", j.size, err)
		}
		for i := range boxes {
			if bad := countDiff(dst[i], want[start+i]); bad > 0 {
				w, h := imageSize(t, j.image)
				t.Errorf("size %d, %s (%dx%d), box %v: %d of %d values differ from Pillow", j.size, filepath.Base(j.image), w, h, boxes[i], bad, len(dst[i]))
			}
			checked++
		}
		start = end
	}
	t.Logf("%d crops of %d images bit-exact with Pillow", checked, len(images))
}

// randomYUVFrames are YUYV and NV12 frames of random bytes (every Y, Cb
// and Cr value, sharp chroma edges), with padded rows.
func randomYUVFrames(rng *rand.Rand, w, h, pad int) (yuyv, nv12 *frame.Frame) {
	fill := func(b []byte) []byte {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	ys := w*2 + pad
	yuyv = &frame.Frame{Format: frame.YUYV, Width: w, Height: h, Stride: ys, Data: fill(make([]byte, ys*h)), Seq: 3}
	ns := w + w%2 + pad
	nv12 = &frame.Frame{Format: frame.NV12, Width: w, Height: h, Stride: ns, Data: fill(make([]byte, ns*(h+(h+1)/2))), Seq: 4}
	return yuyv, nv12
}

// wholeFrameRGB converts a whole frame to packed RGB (stride w*3) through
// the existing whole-frame paths: the row converters over every column,
// or libjpeg-turbo for MJPEG.
func wholeFrameRGB(t testing.TB, f *frame.Frame) []byte {
	switch f.Format {
	case frame.RGB24:
		out := make([]byte, f.Width*f.Height*3)
		for y := 0; y < f.Height; y++ {
			copy(out[y*f.Width*3:], f.Data[y*f.RowStride():][:f.Width*3])
		}
		return out
	case frame.YUYV:
		var s yuyvSource
		s.set(f.Data, f.RowStride(), f.Width)
		return convertedRGB(&s, f.Width, f.Height)
	case frame.NV12:
		var s nv12Source
		s.set(f.Data, f.RowStride(), f.Width, f.Height)
		return convertedRGB(&s, f.Width, f.Height)
	case frame.MJPEG:
		jpg, err := jpegturbo.RepairMJPEG(nil, f.Data)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpegturbo.Decode(jpg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return img.Pix
	}
	t.Fatalf("no conversion for %v", f.Format)
	return nil
}

// cropRGB copies box of a packed w-wide RGB image to a tight buffer.
func cropRGB(rgb []byte, w int, b frame.Box) []byte {
	out := make([]byte, 0, b.Dx()*b.Dy()*3)
	for y := b.Y1; y < b.Y2; y++ {
		out = append(out, rgb[(y*w+b.X1)*3:(y*w+b.X2)*3]...)
	}
	return out
}

// TestFrameBoxesMatchWholeFrameConversion checks the definition for camera
// formats: a box of a frame is the frame converted to RGB as a whole, then
// cropped. Boxes start and end at odd and even columns and rows, so that
// they cut through YUYV pairs and NV12 2x2 blocks.
func TestFrameBoxesMatchWholeFrameConversion(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	var frames []*frame.Frame
	for _, s := range [][3]int{{1280, 720, 6}, {302, 167, 2}, {301, 167, 3}} {
		yuyv, nv12 := randomYUVFrames(rng, s[0], s[1], s[2])
		if s[0]%2 == 0 {
			frames = append(frames, yuyv)
		}
		frames = append(frames, nv12)
	}
	rgbW, rgbH := 641, 359
	rgb := &frame.Frame{Format: frame.RGB24, Width: rgbW, Height: rgbH, Stride: rgbW*3 + 5, Data: make([]byte, (rgbW*3+5)*rgbH)}
	for i := range rgb.Data {
		rgb.Data[i] = byte(rng.Uint32())
	}
	mw, mh := 640, 480
	bars := colourBars(mw, mh)
	for i := range bars {
		bars[i] ^= uint8(rng.Uint32()) & 63
	}
	mjpeg := &frame.Frame{Format: frame.MJPEG, Width: mw, Height: mh, Data: webcamFrame(t, encodeJPEG(t, bars, mw, mh))}
	frames = append(frames, rgb, mjpeg)

	p := New(DefaultConfig())
	defer p.Close()
	ref := New(DefaultConfig())
	defer ref.Close()
	n := p.TensorLen()
	for _, f := range frames {
		w, h := f.Width, f.Height
		boxes := []frame.Box{
			f.Bounds(),
			bx(1, 1, w-1, h-1),
			bx(3, 5, 3+222, 5+151),     // odd x1, y1, x2, y2; upscaled
			bx(7, 3, 7+100, h-2),       // portrait, odd start, even width
			bx(w/2|1, h/3|1, w-3, h-1), // landscape, odd everything
			bx(2, 1, 2+224, 1+224),     // no resize
			bx(w-17, 0, w, 16),         // the smallest region, at the right edge
		}
		if w > h {
			boxes = append(boxes, bx(0, 0, h, h), bx(w-h, 0, w, h))
		}
		boxes = slices.DeleteFunc(boxes, func(b frame.Box) bool { return b.Within(w, h) != nil })
		dst := make([][]uint8, len(boxes))
		for i := range dst {
			dst[i] = make([]uint8, n)
		}
		if err := p.FrameBoxesUint8(f, boxes, dst); err != nil {
			t.Fatalf("%s %dx%d: %v", f.Format, w, h, err)
		}
		conv := wholeFrameRGB(t, f)
		want := make([]uint8, n)
		for i, b := range boxes {
			if err := ref.RGBUint8(cropRGB(conv, w, b), b.Dx(), b.Dy(), 0, want); err != nil {
				t.Fatal(err)
			}
			if bad := countDiff(dst[i], want); bad > 0 {
				t.Errorf("%s %dx%d box %v: %d of %d values differ from converting the whole frame, then cropping", f.Format, w, h, b, bad, n)
			}
		}
		// The whole-frame box is what Frame has always computed.
		if err := ref.FrameUint8(f, want); err != nil {
			t.Fatal(err)
		}
		if bad := countDiff(dst[0], want); bad > 0 {
			t.Errorf("%s: the box of the whole frame differs from FrameUint8 in %d values", f.Format, bad)
		}
		// And the float path is the uint8 path normalised.
		tensors := [][]float32{make([]float32, n), make([]float32, n)}
		if err := p.FrameBoxes(f, boxes[1:3], tensors); err != nil {
			t.Fatal(err)
		}
		norm := make([]float32, n)
		for i, u := range dst[1:3] {
			_ = p.Normalize(u, norm)
			for k := range norm {
				if norm[k] != tensors[i][k] {
					t.Fatalf("%s box %v: float tensor differs from the normalised uint8 pixels at %d", f.Format, boxes[1+i], k)
				}
			}
		}
	}
}

func TestBoxErrors(t *testing.T) {
	p := New(DefaultConfig())
	defer p.Close()
	n := p.TensorLen()
	yuyv, _ := randomYUVFrames(rand.New(rand.NewPCG(1, 2)), 64, 48, 0)
	one := [][]uint8{make([]uint8, n)}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"box beyond the width", func() error { return p.FrameBoxesUint8(yuyv, []frame.Box{bx(0, 0, 65, 48)}, one) },
			"yuyv frame 3 (64x48): box 0,0,65,48 is out of range: x2 65 is beyond the 64x48 frame's width"},
		{"box beyond the height", func() error { return p.FrameBoxesUint8(yuyv, []frame.Box{bx(0, 0, 64, 49)}, one) }, "y2 49 is beyond"},
		{"empty box", func() error { return p.FrameBoxesUint8(yuyv, []frame.Box{bx(5, 5, 5, 9)}, one) }, "is empty"},
		{"inverted box", func() error { return p.FrameBoxesUint8(yuyv, []frame.Box{bx(9, 5, 5, 9)}, one) }, "is inverted"},
		{"negative box", func() error { return p.FrameBoxesUint8(yuyv, []frame.Box{bx(-1, 0, 5, 9)}, one) }, "x1 -1 is negative"},
		{"fewer destinations", func() error { return p.FrameBoxesUint8(yuyv, []frame.Box{bx(0, 0, 8, 8), bx(0, 0, 9, 9)}, one) }, "2 boxes but 1 destinations"},
		{"short destination", func() error {
			return p.FrameBoxes(yuyv, []frame.Box{bx(0, 0, 8, 8)}, [][]float32{make([]float32, 10)})
		}, "destination 0 holds 10 values"},
		{"bad image", func() error { return p.ImageBoxesUint8([]byte("GIF89a"), []frame.Box{bx(0, 0, 1, 1)}, one) }, "not a PNG or JPEG image"},
		{"box beyond an image file", func() error {
			path := filepath.Join(sharedDir(t), "reference", "images", "img6_32x32.png")
			return p.FileBoxesUint8(path, []frame.Box{bx(0, 0, 32, 33)}, one)
		}, "img6_32x32.png: box 0,0,32,33 is out of range"},
		{"not a regular file", func() error { return p.FileBoxesUint8(t.TempDir(), []frame.Box{bx(0, 0, 1, 1)}, one) }, "not a regular file"},
	}
	for _, c := range cases {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// The preprocessor is still good after errors.
	if err := p.FrameBoxesUint8(yuyv, []frame.Box{bx(1, 1, 63, 47)}, one); err != nil {
		t.Fatal(err)
	}
}

// TestBoxesSteadyStateDoesNotAllocate: the whole frame and several regions
// of each frame of a stream, as the daemon will ask, allocate nothing once
// warm.
func TestBoxesSteadyStateDoesNotAllocate(t *testing.T) {
	w, h := 1280, 720
	rgb := colourBars(w, h)
	yuyv, nv12 := yuvFrames(rgb, w, h, 0)
	mjpeg := &frame.Frame{Format: frame.MJPEG, Width: w, Height: h, Data: webcamFrame(t, encodeJPEG(t, rgb, w, h))}
	p := New(DefaultConfig())
	defer p.Close()
	boxes := []frame.Box{frame.Full(w, h), bx(0, 0, 720, 720), bx(560, 0, 1280, 720), bx(561, 361, 881, 601)}
	dst := make([][]float32, len(boxes))
	for i := range dst {
		dst[i] = make([]float32, p.TensorLen())
	}
	for _, f := range []*frame.Frame{yuyv, nv12, mjpeg} {
		if err := p.FrameBoxes(f, boxes, dst); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(5, func() { _ = p.FrameBoxes(f, boxes, dst) }); n != 0 {
			t.Errorf("%s: %.1f allocations per frame with %d boxes in steady state", f.Format, n, len(boxes))
		}
	}
}

// TestWeightCacheEviction: more crop sizes than the cache holds still give
// the right pixels (weights recomputed in evicted entries).
func TestWeightCacheEviction(t *testing.T) {
	yuyv, _ := randomYUVFrames(rand.New(rand.NewPCG(5, 6)), 320, 240, 0)
	p := New(Config{Size: 32})
	defer p.Close()
	ref := New(Config{Size: 32})
	defer ref.Close()
	conv := wholeFrameRGB(t, yuyv)
	got, want := [][]uint8{make([]uint8, p.TensorLen())}, make([]uint8, p.TensorLen())
	for round := 0; round < 2; round++ {
		for i := 0; i < 2*maxGeometries+3; i++ {
			b := bx(i, i/2, 40+7*i, 100+3*i)
			if err := p.FrameBoxesUint8(yuyv, []frame.Box{b}, got); err != nil {
				t.Fatal(err)
			}
			ref.resamplers = [maxGeometries]resampler{} // a fresh computation each time
			if err := ref.RGBUint8(cropRGB(conv, 320, b), b.Dx(), b.Dy(), 0, want); err != nil {
				t.Fatal(err)
			}
			if bad := countDiff(got[0], want); bad > 0 {
				t.Fatalf("round %d, box %v: %d values differ", round, b, bad)
			}
		}
	}
}

package preprocess

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/testimage"
)

// floatYUV is the BT.601 limited-range matrix in floating point, independent
// of the fixed-point code under test.
func floatYUV(y, cb, cr uint8) [3]float64 {
	c, d, e := float64(y)-16, float64(cb)-128, float64(cr)-128
	return [3]float64{
		255.0/219*c*1 + 255.0/224*1.402*e,
		255.0/219*c - 255.0/224*1.772*0.114/0.587*d - 255.0/224*1.402*0.299/0.587*e,
		255.0/219*c + 255.0/224*1.772*d,
	}
}

// rgbToYUV is the inverse, rounded, for building frames from known colours.
func rgbToYUV(r, g, b uint8) (y, cb, cr uint8) {
	R, G, B := float64(r), float64(g), float64(b)
	Y := 0.299*R + 0.587*G + 0.114*B
	round := func(v float64) uint8 { return uint8(math.Max(0, math.Min(255, math.Round(v)))) }
	return round(16 + 219*Y/255), round(128 + 224*(B-Y)/(1.772*255)), round(128 + 224*(R-Y)/(1.402*255))
}

func TestYUVConversionMatchesFloatFormula(t *testing.T) {
	var px [3]byte
	worst := 0.0
	for y := 16; y <= 235; y++ {
		for cb := 16; cb <= 240; cb++ {
			for cr := 16; cr <= 240; cr++ {
				yuvToRGB(px[:], uint8(y), uint8(cb), uint8(cr))
				want := floatYUV(uint8(y), uint8(cb), uint8(cr))
				for c := 0; c < 3; c++ {
					w := math.Max(0, math.Min(255, want[c]))
					if d := math.Abs(float64(px[c]) - w); d > worst {
						worst = d
						if d > 1 {
							t.Fatalf("Y %d Cb %d Cr %d channel %d: got %d, float formula %.3f", y, cb, cr, c, px[c], w)
						}
					}
				}
			}
		}
	}
	t.Logf("largest difference from the float formula: %.3f", worst)
}

// colourBars is an RGB image of flat colours in 2x2-aligned blocks, so that
// chroma subsampling loses nothing.
func colourBars(w, h int) []byte {
	colours := [][3]uint8{{235, 235, 235}, {200, 190, 20}, {20, 190, 200}, {30, 200, 30}, {200, 40, 200}, {210, 30, 30}, {30, 30, 210}, {16, 16, 16}}
	rgb := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := colours[(x/2*2*len(colours)/w+y/64)%len(colours)]
			copy(rgb[(y*w+x)*3:], c[:])
		}
	}
	return rgb
}

// yuvFrames builds YUYV (with row padding) and NV12 frames of an RGB image.
func yuvFrames(rgb []byte, w, h, pad int) (yuyv, nv12 *frame.Frame) {
	yuyvStride := w*2 + pad
	yuyv = &frame.Frame{Format: frame.YUYV, Width: w, Height: h, Stride: yuyvStride, Data: make([]byte, yuyvStride*h), Seq: 1}
	nvStride := w + w%2 + pad
	nv12 = &frame.Frame{Format: frame.NV12, Width: w, Height: h, Stride: nvStride, Data: make([]byte, nvStride*(h+(h+1)/2)), Seq: 1}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := rgb[(y*w+x)*3:]
			Y, cb, cr := rgbToYUV(p[0], p[1], p[2])
			yuyv.Data[y*yuyvStride+x*2] = Y
			nv12.Data[y*nvStride+x] = Y
			if x%2 == 0 {
				yuyv.Data[y*yuyvStride+x*2+1] = cb
				yuyv.Data[y*yuyvStride+x*2+3] = cr
				if y%2 == 0 {
					nv12.Data[nvStride*h+y/2*nvStride+x] = cb
					nv12.Data[nvStride*h+y/2*nvStride+x+1] = cr
				}
			}
		}
	}
	return yuyv, nv12
}

// convertedRGB is the full-frame RGB our converter yields, for comparing the
// on-demand row conversion inside the resize with the plain RGB path.
func convertedRGB(src rowSource, w, h int) []byte {
	out := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		copy(out[y*w*3:], src.row(y, 0, w)[:w*3])
	}
	return out
}

func TestYUVFramesMatchRGBPath(t *testing.T) {
	for _, size := range [][2]int{{640, 480}, {301, 167}, {160, 720}} {
		w, h := size[0], size[1]
		rgb := colourBars(w, h)
		yuyv, nv12 := yuvFrames(rgb, w, h, 6)
		p := New(DefaultConfig())
		want := make([]uint8, p.TensorLen())
		if err := p.RGBUint8(rgb, w, h, 0, want); err != nil {
			t.Fatal(err)
		}
		for _, f := range []*frame.Frame{yuyv, nv12} {
			if f.Format == frame.YUYV && w%2 != 0 {
				if err := p.FrameUint8(f, want); err == nil || !strings.Contains(err.Error(), "even") {
					t.Errorf("odd-width YUYV: err = %v", err)
				}
				continue
			}
			got := make([]uint8, p.TensorLen())
			if err := p.FrameUint8(f, got); err != nil {
				t.Fatal(err)
			}
			// Known colours: within the conversion's rounding, which the
			// resize can spread to at most a couple of levels.
			for i := range got {
				if d := int(got[i]) - int(want[i]); d < -2 || d > 2 {
					t.Fatalf("%s %dx%d: value %d is %d, RGB path %d", f.Format, w, h, i, got[i], want[i])
				}
			}
			// Exactly: the frame path equals the RGB path on the frame's
			// own converted pixels, so converting only the crop window's
			// rows and columns changes nothing.
			var conv []byte
			if f.Format == frame.YUYV {
				var s yuyvSource
				s.set(f.Data, f.Stride, w)
				conv = convertedRGB(&s, w, h)
			} else {
				var s nv12Source
				s.set(f.Data, f.Stride, w, h)
				conv = convertedRGB(&s, w, h)
			}
			exact := make([]uint8, p.TensorLen())
			if err := p.RGBUint8(conv, w, h, 0, exact); err != nil {
				t.Fatal(err)
			}
			if bad := countDiff(got, exact); bad > 0 {
				t.Errorf("%s %dx%d: %d values differ from the RGB path on the converted frame", f.Format, w, h, bad)
			}
		}
	}
}

func encodeJPEG(t testing.TB, rgb []byte, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		copy(img.Pix[i*4:], rgb[i*3:i*3+3])
		img.Pix[i*4+3] = 255
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// webcamFrame strips the DHT segments and the EOI of a JPEG, as UVC cameras
// send MJPEG.
func webcamFrame(t testing.TB, jpg []byte) []byte {
	out, err := testimage.WebcamMJPEG(jpg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMJPEGFrame(t *testing.T) {
	w, h := 320, 240
	jpg := encodeJPEG(t, colourBars(w, h), w, h)
	p := New(DefaultConfig())
	defer p.Close()
	want := make([]uint8, p.TensorLen())
	if err := p.ImageUint8(jpg, want); err != nil {
		t.Fatal(err)
	}
	got := make([]uint8, p.TensorLen())
	f := &frame.Frame{Format: frame.MJPEG, Width: w, Height: h, Data: webcamFrame(t, jpg), Seq: 7}
	if err := p.FrameUint8(f, got); err != nil {
		t.Fatal(err)
	}
	if bad := countDiff(got, want); bad > 0 {
		t.Errorf("MJPEG frame without DHT/EOI: %d values differ from the complete JPEG", bad)
	}
	f.Width = 640
	if err := p.FrameUint8(f, got); err == nil || !strings.Contains(err.Error(), "320x240, not the frame's size") {
		t.Errorf("MJPEG frame of the wrong size: err = %v", err)
	}
	f.Width = 320
	f.Data = f.Data[:len(f.Data)*2/3]
	err := p.FrameUint8(f, got)
	if err == nil || !strings.Contains(err.Error(), "mjpeg frame 7") {
		t.Errorf("truncated MJPEG frame: err = %v, want an error naming the frame", err)
	}
}

func TestBadInputErrors(t *testing.T) {
	p := New(DefaultConfig())
	defer p.Close()
	dst := make([]uint8, p.TensorLen())
	dir := t.TempDir()
	palette := filepath.Join(dir, "palette.png")
	var b bytes.Buffer
	pal := image.NewPaletted(image.Rect(0, 0, 30, 30), color.Palette{color.Black, color.White})
	if err := png.Encode(&b, pal); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(palette, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.png")
	if err := os.WriteFile(corrupt, b.Bytes()[:len(b.Bytes())/2], 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"missing file", func() error { return p.FileUint8(filepath.Join(dir, "nope.png"), dst) }, "nope.png"},
		{"palette PNG", func() error { return p.FileUint8(palette, dst) }, "palette.png: PNG: palette"},
		{"truncated PNG", func() error { return p.FileUint8(corrupt, dst) }, "corrupt.png"},
		{"not an image", func() error { return p.ImageUint8([]byte("GIF89a......"), dst) }, "not a PNG or JPEG image"},
		{"short destination", func() error { return p.Image(nil, make([]float32, 10)) }, "destination holds 10"},
		{"truncated YUYV", func() error {
			return p.FrameUint8(&frame.Frame{Format: frame.YUYV, Width: 640, Height: 480, Data: make([]byte, 640*2*479)}, dst)
		}, "truncated YUYV"},
		{"truncated NV12", func() error {
			return p.FrameUint8(&frame.Frame{Format: frame.NV12, Width: 64, Height: 48, Data: make([]byte, 64*48)}, dst)
		}, "truncated NV12"},
		{"bad stride", func() error {
			return p.FrameUint8(&frame.Frame{Format: frame.RGB24, Width: 64, Height: 48, Stride: 100, Data: make([]byte, 64*48*3)}, dst)
		}, "stride 100"},
		{"zero size", func() error { return p.FrameUint8(&frame.Frame{Format: frame.RGB24}, dst) }, "bad RGB image size"},
		{"unknown format", func() error { return p.FrameUint8(&frame.Frame{Format: 99, Width: 4, Height: 4}, dst) }, "unsupported pixel format"},
		{"MJPEG garbage", func() error {
			return p.FrameUint8(&frame.Frame{Format: frame.MJPEG, Width: 4, Height: 4, Data: []byte{1, 2, 3}}, dst)
		}, "SOI"},
	}
	for _, c := range cases {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	w, h := 640, 360
	rgb := colourBars(w, h)
	yuyv, nv12 := yuvFrames(rgb, w, h, 0)
	mjpeg := &frame.Frame{Format: frame.MJPEG, Width: w, Height: h, Data: webcamFrame(t, encodeJPEG(t, rgb, w, h))}
	p := New(DefaultConfig())
	defer p.Close()
	dst := make([]float32, p.TensorLen())
	for _, f := range []*frame.Frame{yuyv, nv12, mjpeg} {
		if err := p.Frame(f, dst); err != nil { // warm up buffers and weights
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(5, func() { _ = p.Frame(f, dst) }); n != 0 {
			t.Errorf("%s: %.1f allocations per frame in steady state", f.Format, n)
		}
	}
}

package jpegturbo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rgbOf packs an image's pixels as RGB rows of stride bytes.
func rgbOf(img *image.RGBA, stride int) []byte {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	out := make([]byte, stride*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			copy(out[y*stride+x*3:], img.Pix[y*img.Stride+x*4:][:3])
		}
	}
	return out
}

// psnr compares packed RGB a (stride sa) with b (packed) over w×h.
func psnr(a []byte, sa int, b []byte, w, h int) float64 {
	var se float64
	for y := 0; y < h; y++ {
		for i := 0; i < w*3; i++ {
			d := float64(a[y*sa+i]) - float64(b[y*w*3+i])
			se += d * d
		}
	}
	mse := se / float64(w*h*3)
	return 10 * math.Log10(255*255/mse)
}

// smoothImage is what photos mostly are, gradients and soft shapes, so
// that a lossy round trip should come back close.
func smoothImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			b := 128 + 100*math.Sin(float64(x)/9)*math.Cos(float64(y)/7)
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8(b), 255})
		}
	}
	return img
}

func TestEncodeRoundTrip(t *testing.T) {
	w, h := 97, 61
	stride := w*3 + 7 // padded rows
	src := rgbOf(smoothImage(w, h), stride)
	e, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, q := range []int{50, 90} {
		jpg, err := e.Encode(Image{Width: w, Height: h, Channels: 3, Pix: src, Stride: stride}, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(jpg, nil)
		if err != nil {
			t.Fatalf("quality %d: our decoder: %v", q, err)
		}
		if got.Width != w || got.Height != h || got.Channels != 3 {
			t.Fatalf("quality %d: decoded %dx%dx%d", q, got.Width, got.Height, got.Channels)
		}
		p := psnr(src, stride, got.Pix, w, h)
		t.Logf("quality %d: %d bytes, PSNR %.1f dB", q, len(jpg), p)
		if min := map[int]float64{50: 33, 90: 40}[q]; p < min {
			t.Errorf("quality %d: PSNR %.1f dB < %.0f", q, p, min)
		}
		// Another decoder reads it too, to the same size.
		img, err := jpeg.Decode(bytes.NewReader(jpg))
		if err != nil || img.Bounds().Dx() != w || img.Bounds().Dy() != h {
			t.Errorf("quality %d: Go's image/jpeg: %v, %v", q, err, img.Bounds())
		}
	}
}

// TestEncodedReadByPillow: Pillow opens our JPEGs and decodes them to the
// pixels our decoder gives.
func TestEncodedReadByPillow(t *testing.T) {
	python := os.Getenv("CLIPD_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	if err := exec.Command(python, "-c", "import PIL").Run(); err != nil {
		t.Skipf("Pillow not available through %s (%v); set CLIPD_PYTHON", python, err)
	}
	dir := t.TempDir()
	var files, want []string
	for i, size := range [][2]int{{640, 360}, {33, 17}, {1, 1}} {
		w, h := size[0], size[1]
		jpg, err := Encode(Image{Width: w, Height: h, Channels: 3, Pix: rgbOf(testImage(w, h), w*3)}, 85, nil)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, string(rune('a'+i))+".jpg")
		if err := os.WriteFile(f, jpg, 0o644); err != nil {
			t.Fatal(err)
		}
		dec, err := Decode(jpg, nil)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(dec.Pix)
		files, want = append(files, f), append(want, hex.EncodeToString(sum[:]))
	}
	script := `import sys, hashlib
from PIL import Image
for f in sys.argv[1:]:
    im = Image.open(f)
    assert im.format == "JPEG" and im.mode == "RGB", (im.format, im.mode)
    print(hashlib.sha256(im.tobytes()).hexdigest())`
	out, err := exec.Command(python, append([]string{"-c", script}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("Pillow: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Pillow decodes our JPEGs to other pixels:\n%v\nwant %v", got, want)
	}
}

func TestEncodeGray(t *testing.T) {
	w, h := 40, 30
	pix := make([]byte, w*h)
	for i := range pix {
		pix[i] = uint8(i * 7)
	}
	jpg, err := Encode(Image{Width: w, Height: h, Channels: 1, Pix: pix}, 90, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(jpg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Channels != 1 || got.Width != w || got.Height != h {
		t.Fatalf("grayscale round trip gave %dx%dx%d", got.Width, got.Height, got.Channels)
	}
}

func TestEncodeErrors(t *testing.T) {
	e, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	pix := make([]byte, 16*16*3)
	cases := []struct {
		img     Image
		quality int
		want    string
	}{
		{Image{Width: 0, Height: 16, Channels: 3, Pix: pix}, 90, "cannot encode a 0x16 image"},
		{Image{Width: 70000, Height: 1, Channels: 3, Pix: make([]byte, 210000)}, 90, "cannot encode a 70000x1 image"},
		{Image{Width: 16, Height: 16, Channels: 4, Pix: make([]byte, 16*16*4)}, 90, "cannot encode 4 channels"},
		{Image{Width: 16, Height: 16, Channels: 3, Pix: pix[:100]}, 90, "has 100 bytes of pixels, needs 768"},
		{Image{Width: 16, Height: 16, Channels: 3, Pix: pix, Stride: 40}, 90, "stride 40 is less than width 16 x 3"},
		{Image{Width: 16, Height: 16, Channels: 3, Pix: pix}, 0, "quality 0 is outside 1..100"},
		{Image{Width: 16, Height: 16, Channels: 3, Pix: pix}, 101, "quality 101"},
	}
	for _, c := range cases {
		if _, err := e.Encode(c.img, c.quality, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%dx%dx%d q%d: err = %v, want %q", c.img.Width, c.img.Height, c.img.Channels, c.quality, err, c.want)
		}
	}
	if _, err := e.Encode(Image{Width: 16, Height: 16, Channels: 3, Pix: pix}, 90, nil); err != nil {
		t.Fatalf("encoder broken after errors: %v", err)
	}
	e.Close()
	if _, err := e.Encode(Image{Width: 16, Height: 16, Channels: 3, Pix: pix}, 90, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("closed encoder: err = %v", err)
	}
}

func TestEncodeReusesBuffer(t *testing.T) {
	w, h := 320, 240
	img := Image{Width: w, Height: h, Channels: 3, Pix: rgbOf(testImage(w, h), w*3)}
	e, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	buf := make([]byte, 0, BufSize(w, h))
	jpg, err := e.Encode(img, 80, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &jpg[0] != &buf[:1][0] {
		t.Error("Encode did not build the JPEG in the caller's buffer")
	}
	if n := testing.AllocsPerRun(10, func() { _, _ = e.Encode(img, 80, buf) }); n != 0 {
		t.Errorf("Encode into a large enough buffer allocates %.0f times", n)
	}
}

func BenchmarkEncode720p(b *testing.B) {
	w, h := 1280, 720
	img := Image{Width: w, Height: h, Channels: 3, Pix: rgbOf(testImage(w, h), w*3)}
	e, err := NewEncoder()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	buf := make([]byte, 0, BufSize(w, h))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(img, 85, buf); err != nil {
			b.Fatal(err)
		}
	}
}

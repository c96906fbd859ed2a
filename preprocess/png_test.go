package preprocess

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/testimage"
)

// The pixel limit bounds what Go's PNG decoder allocates at 4 bytes a
// pixel; a 16-bit PNG takes 8, so it gets half the pixels: a 64-megapixel
// 16-bit header is refused before anything is decoded, and with a limit
// of 1000 pixels a real 16-bit 20x20 image decodes while 30x20 does not
// (an 8-bit 30x20 one does).
func TestSixteenBitPNGsCountTheirBytes(t *testing.T) {
	p := New(DefaultConfig())
	defer p.Close()
	dst := make([]float32, p.TensorLen())
	deep := testimage.PNGDeclaring(8000, 8000)
	deep[24], deep[25] = 16, 6 // IHDR: 16-bit RGBA
	var err error
	grew := heapGrowth(func() { err = p.Image(deep, dst) })
	if err == nil || !strings.Contains(err.Error(), "a 16-bit image of 8000x8000 decodes to 488 MiB, more than the limit of 381 MiB") {
		t.Errorf("64 MP at 16 bits: %v", err)
	}
	if grew > 16<<20 {
		t.Errorf("refusing it allocated %d MB", grew>>20)
	}

	small := New(Config{Size: 8, MaxPixels: 1000})
	defer small.Close()
	out := make([]float32, small.TensorLen())
	encode := func(img image.Image) []byte {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	translucent := func(img interface{ Set(int, int, color.Color) }, w, h int) {
		for y := range h {
			for x := range w {
				img.Set(x, y, color.NRGBA64{R: uint16(x * 3000), G: uint16(y * 3000), B: 40000, A: 30000})
			}
		}
	}
	fits := image.NewNRGBA64(image.Rect(0, 0, 20, 20))
	translucent(fits, 20, 20)
	if err := small.Image(encode(fits), out); err != nil {
		t.Errorf("16-bit 20x20 (3200 bytes of 4000): %v", err)
	}
	over := image.NewNRGBA64(image.Rect(0, 0, 30, 20))
	translucent(over, 30, 20)
	if err := small.Image(encode(over), out); err == nil || !strings.Contains(err.Error(), "16-bit image of 30x20") {
		t.Errorf("16-bit 30x20 (4800 bytes of 4000): %v", err)
	}
	eight := image.NewNRGBA(image.Rect(0, 0, 30, 20))
	translucent(eight, 30, 20)
	if err := small.Image(encode(eight), out); err != nil {
		t.Errorf("8-bit 30x20: %v", err)
	}
}

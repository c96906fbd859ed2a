package frame

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRowRGBWindows: converting only a window of a row gives, for every
// pixel of the window, what converting the whole row gives, whatever the
// parity of its ends.
func TestRowRGBWindows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	frames := []*Frame{
		{Format: YUYV, Width: 38, Height: 5, Stride: 80, Data: random(80 * 5)},
		{Format: NV12, Width: 37, Height: 5, Stride: 40, Data: random(40 * 8)},
		{Format: RGB24, Width: 21, Height: 3, Data: random(21 * 3 * 3)},
	}
	for _, f := range frames {
		if err := f.Validate(); err != nil {
			t.Fatal(err)
		}
		whole := make([]byte, f.Width*3)
		part := make([]byte, f.Width*3)
		for y := 0; y < f.Height; y++ {
			copy(whole, f.RowRGB(whole, y, 0, f.Width)[:f.Width*3])
			for x0 := 0; x0 < f.Width; x0++ {
				for x1 := x0 + 1; x1 <= f.Width; x1++ {
					row := f.RowRGB(part, y, x0, x1)
					if !bytes.Equal(row[x0*3:x1*3], whole[x0*3:x1*3]) {
						t.Fatalf("%s row %d window [%d,%d) differs from the whole row", f.Format, y, x0, x1)
					}
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		f    Frame
		want string
	}{
		{Frame{Format: RGB24, Width: 4, Height: 4, Data: make([]byte, 48)}, ""},
		{Frame{Format: RGB24, Width: 4, Height: 4, Data: make([]byte, 47)}, "truncated RGB data: 47 bytes, need 48"},
		{Frame{Format: RGB24, Width: 4, Height: 4, Stride: 11, Data: make([]byte, 48)}, "RGB stride 11 is less than width 4 x 3 bytes"},
		{Frame{Format: RGB24}, "bad RGB image size 0x0"},
		{Frame{Format: YUYV, Width: 5, Height: 2, Data: make([]byte, 20)}, "YUYV width must be even"},
		{Frame{Format: YUYV, Width: 1 << 17, Height: 1, Data: nil}, "bad YUYV image size"},
		{Frame{Format: NV12, Width: 5, Height: 3, Data: make([]byte, 5*3+5*1+6)}, ""},
		{Frame{Format: NV12, Width: 5, Height: 3, Data: make([]byte, 5*3+5*1+5)}, "truncated NV12 frame"},
		{Frame{Format: MJPEG, Width: 0, Height: 0, Data: []byte{1}}, ""},
		{Frame{Format: MJPEG, Width: -1, Height: 0}, "bad MJPEG frame size"},
		{Frame{Format: 42, Width: 4, Height: 4}, "unsupported pixel format"},
	}
	for _, c := range cases {
		err := c.f.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %dx%d stride %d, %d bytes: err = %v, want %q", c.f.Format, c.f.Width, c.f.Height, c.f.Stride, len(c.f.Data), err, c.want)
		}
	}
}

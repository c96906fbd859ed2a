package preprocess

import (
	"testing"

	"github.com/clipd/clipd/frame"
)

// FuzzFrame feeds arbitrary geometry and bytes through every frame format:
// each must give a result or an error, never a panic.
func FuzzFrame(f *testing.F) {
	f.Add(uint8(frame.YUYV), uint16(8), uint16(6), uint16(0), make([]byte, 8*6*2))
	f.Add(uint8(frame.NV12), uint16(9), uint16(7), uint16(10), make([]byte, 10*11))
	f.Add(uint8(frame.RGB24), uint16(2), uint16(70), uint16(0), make([]byte, 2*70*3))
	f.Add(uint8(frame.MJPEG), uint16(8), uint16(8), uint16(0), []byte{0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9})
	p := New(Config{Size: 32})
	dst := make([]uint8, p.TensorLen())
	f.Fuzz(func(t *testing.T, format uint8, w, h, stride uint16, data []byte) {
		fr := &frame.Frame{Format: frame.Format(format % 5), Width: int(w % 300), Height: int(h % 300), Stride: int(stride), Data: data}
		_ = p.FrameUint8(fr, dst)
	})
}

// FuzzFrameBoxes feeds arbitrary frames and boxes through FrameBoxesUint8
// with the whole frame and one box, the daemon's call: each must give a
// result or an error, never a panic, and for the raw formats a box's result
// must be the whole frame converted, cropped and preprocessed.
func FuzzFrameBoxes(f *testing.F) {
	f.Add(uint8(frame.YUYV), uint16(40), uint16(30), uint16(0), int16(3), int16(5), int16(39), int16(29), make([]byte, 40*30*2))
	f.Add(uint8(frame.NV12), uint16(33), uint16(21), uint16(34), int16(1), int16(1), int16(32), int16(20), make([]byte, 34*32))
	f.Add(uint8(frame.RGB24), uint16(70), uint16(2), uint16(0), int16(0), int16(0), int16(1), int16(2), make([]byte, 2*70*3))
	f.Add(uint8(frame.MJPEG), uint16(8), uint16(8), uint16(0), int16(1), int16(1), int16(7), int16(7), []byte{0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9})
	f.Add(uint8(frame.YUYV), uint16(16), uint16(16), uint16(0), int16(9), int16(2), int16(3), int16(20), make([]byte, 16*16*2))
	p := New(Config{Size: 32})
	ref := New(Config{Size: 32})
	dst := [][]uint8{make([]uint8, p.TensorLen()), make([]uint8, p.TensorLen())}
	want := make([]uint8, p.TensorLen())
	f.Fuzz(func(t *testing.T, format uint8, w, h, stride uint16, x1, y1, x2, y2 int16, data []byte) {
		fr := &frame.Frame{Format: frame.Format(format % 5), Width: int(w % 300), Height: int(h % 300), Stride: int(stride), Data: data}
		// Mostly within the frame, so that most boxes are processed;
		// negative and too large ones still occur.
		bw, bh := fr.Width+2, fr.Height+2
		box := frame.Box{X1: int(x1) % bw, Y1: int(y1) % bh, X2: int(x2) % bw, Y2: int(y2) % bh}
		if err := p.FrameBoxesUint8(fr, []frame.Box{fr.Bounds(), box}, dst); err != nil {
			return
		}
		if fr.Format == frame.MJPEG {
			return
		}
		conv := wholeFrameRGB(t, fr)
		if err := ref.RGBUint8(cropRGB(conv, fr.Width, box), box.Dx(), box.Dy(), 0, want); err != nil {
			t.Fatal(err)
		}
		if bad := countDiff(dst[1], want); bad > 0 {
			t.Fatalf("%s %dx%d box %v: %d values differ from converting, cropping and preprocessing", fr.Format, fr.Width, fr.Height, box, bad)
		}
	})
}

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

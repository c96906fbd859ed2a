package preprocess

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
)

// BenchmarkJPEGFile1080p is JPEG file bytes (1920x1080, 4:2:0) to the
// normalised 224 tensor: decode, resize of the crop window, normalise.
func BenchmarkJPEGFile1080p(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(sharedDir(b), "reference", "images", "img2_1920x1080.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	p := New(DefaultConfig())
	defer p.Close()
	dst := make([]float32, p.TensorLen())
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if err := p.Image(data, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU adds the process CPU time per op, which, unlike ns/op, does not
// grow when other processes compete for the cores.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchFrame(b *testing.B, f *frame.Frame) {
	p := New(DefaultConfig())
	defer p.Close()
	dst := make([]float32, p.TensorLen())
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if err := p.Frame(f, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkYUYV720p(b *testing.B) {
	yuyv, _ := yuvFrames(colourBars(1280, 720), 1280, 720, 0)
	benchFrame(b, yuyv)
}

func BenchmarkNV12720p(b *testing.B) {
	_, nv12 := yuvFrames(colourBars(1280, 720), 1280, 720, 0)
	benchFrame(b, nv12)
}

// BenchmarkMJPEG720p is a webcam frame without Huffman tables or EOI, so
// the repair copy is included.
func BenchmarkMJPEG720p(b *testing.B) {
	rgb := colourBars(1280, 720)
	for i := range rgb { // texture, so the entropy data is not trivial
		rgb[i] ^= uint8(i*2654435761>>24) & 31
	}
	f := &frame.Frame{Format: frame.MJPEG, Width: 1280, Height: 720, Data: webcamFrame(b, encodeJPEG(b, rgb, 1280, 720))}
	benchFrame(b, f)
}

// BenchmarkRegions720p is the cost of the whole frame and of regions of a
// 1280x720 frame: the left and right 720x720 squares (which together cover
// all of a 16:9 frame) and a 320x240 box, alone and in one FrameBoxes call
// with the whole frame (one decode for MJPEG). "separate-calls" is the same
// three tensors from three calls, i.e. three MJPEG decodes.
func BenchmarkRegions720p(b *testing.B) {
	w, h := 1280, 720
	rgb := colourBars(w, h)
	for i := range rgb {
		rgb[i] ^= uint8(i*2654435761>>24) & 31
	}
	yuyv, _ := yuvFrames(rgb, w, h, 0)
	mjpeg := &frame.Frame{Format: frame.MJPEG, Width: w, Height: h, Data: webcamFrame(b, encodeJPEG(b, rgb, w, h))}
	whole, left, right := frame.Full(w, h), bx(0, 0, 720, 720), bx(560, 0, 1280, 720)
	small := bx(560, 360, 880, 600)
	sets := []struct {
		name     string
		boxes    []frame.Box
		separate bool
	}{
		{"whole", []frame.Box{whole}, false},
		{"left+right", []frame.Box{left, right}, false},
		{"small", []frame.Box{small}, false},
		{"whole+left+right", []frame.Box{whole, left, right}, false},
		{"whole+left+right/separate-calls", []frame.Box{whole, left, right}, true},
		{"whole+left+right+small", []frame.Box{whole, left, right, small}, false},
	}
	for _, f := range []*frame.Frame{mjpeg, yuyv} {
		for _, set := range sets {
			b.Run(f.Format.String()+"/"+set.name, func(b *testing.B) {
				p := New(DefaultConfig())
				defer p.Close()
				dst := make([][]float32, len(set.boxes))
				for i := range dst {
					dst[i] = make([]float32, p.TensorLen())
				}
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					if set.separate {
						for i := range set.boxes {
							if err := p.FrameBoxes(f, set.boxes[i:i+1], dst[i:i+1]); err != nil {
								b.Fatal(err)
							}
						}
						continue
					}
					if err := p.FrameBoxes(f, set.boxes, dst); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

package snapshot

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
)

// BenchmarkEncode720p is the cost of one snapshot of a 1280x720 frame of
// each format, without and with a region's box (an MJPEG frame without a
// box is only checked and copied; with one it is decoded, drawn on and
// re-encoded).
func BenchmarkEncode720p(b *testing.B) {
	fr := frames(b, 1280, 720)
	box := &frame.Box{X1: 560, Y1: 0, X2: 1280, Y2: 720}
	for _, name := range []string{"rgb24", "yuyv", "nv12", "mjpeg-webcam"} {
		for _, withBox := range []bool{false, true} {
			label := name
			var bx *frame.Box
			if withBox {
				label, bx = name+"+box", box
			}
			b.Run(label, func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					if _, err := Encode(fr[name], bx, DefaultQuality); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSave is what a snapshot costs the classification path that
// asks for it: naming the file and queueing the frame ("queued", with a
// queue that never fills here since the frames share their data) or
// dropping it ("full"), while the writer encodes and writes in its own
// goroutine.
func BenchmarkSave(b *testing.B) {
	f := frames(b, 1280, 720)["yuyv"]
	for _, c := range []struct {
		name  string
		queue int64
	}{{"queued", 1 << 62}, {"full", 1}} {
		b.Run(c.name, func(b *testing.B) {
			w, err := New(Config{Dir: filepath.Join(b.TempDir(), "s"), MaxFiles: 50, QueueBytes: c.queue})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				fr := new(frame.Frame) // each frame is new, as from a camera
				*fr = *f
				fr.Seq, fr.Time = seq, time.Unix(int64(seq), 0)
				if _, err := w.Save("cam", "gate", fr, &frame.Box{X2: 720, Y2: 720}); err != nil && !errors.Is(err, ErrQueueFull) {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			w.mu.Lock()
			w.queue = w.queue[:0] // Close would write them all
			w.mu.Unlock()
		})
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

package daemon

import (
	"testing"
	"time"

	"github.com/clipd/clipd/config"
)

func TestCaptureFPS(t *testing.T) {
	for _, c := range []struct {
		source string
		fps    int
		every  time.Duration
		want   int
	}{
		{"rtsp://cam/1", 30, 200 * time.Millisecond, 10},
		{"https://cam/mjpg", 30, time.Second, 2},
		{"/srv/clip.mp4", 30, 300 * time.Millisecond, 7},
		{"rtsp://cam/1", 30, time.Minute, 1},
		{"rtsp://cam/1", 8, 100 * time.Millisecond, 8}, // never above the configured rate
		{"rtsp://cam/1", 30, 0, 30},                    // every frame classified
		{"gst:nvarguscamerasrc ! nvvidconv", 30, 500 * time.Millisecond, 4},
		{"/dev/video0", 30, time.Second, 30},     // devices keep their rate
		{"pattern?hold=10", 15, time.Second, 15}, // scenes are counted in frames
	} {
		cc := config.Camera{Source: c.source, FPS: c.fps, ClassifyEvery: c.every}
		if got := captureFPS(cc); got != c.want {
			t.Errorf("captureFPS(%s, fps %d, every %v) = %d, want %d", c.source, c.fps, c.every, got, c.want)
		}
	}
}

// At two frames an interval with a few milliseconds of jitter, frames are
// classified at the configured rate, not at two thirds of it.
func TestClassifyDueToleratesJitter(t *testing.T) {
	const every = 200 * time.Millisecond
	start := time.Unix(1000, 0)
	var last time.Time
	classified := 0
	for i := range 100 { // 10 s at 10 frames/s
		jitter := time.Duration((i*7919)%9-4) * time.Millisecond // -4..+4 ms
		at := start.Add(time.Duration(i)*100*time.Millisecond + jitter)
		if classifyDue(last, at, every) {
			if !last.IsZero() && at.Sub(last) < every*9/10 {
				t.Fatalf("frame %d classified %v after the previous one", i, at.Sub(last))
			}
			last = at
			classified++
		}
	}
	if classified != 50 {
		t.Errorf("classified %d frames in 10 s, want 50 (one per %v)", classified, every)
	}
	if !classifyDue(start, start, 0) || !classifyDue(time.Time{}, start, every) {
		t.Error("classify_every 0, or a first frame, must always be due")
	}
}

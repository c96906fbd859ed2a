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
		{"/dev/video0", 30, time.Second, 30},           // devices keep their rate
		{"pattern?hold=10", 15, time.Second, 15},       // scenes are counted in frames
	} {
		cc := config.Camera{Source: c.source, FPS: c.fps, ClassifyEvery: c.every}
		if got := captureFPS(cc); got != c.want {
			t.Errorf("captureFPS(%s, fps %d, every %v) = %d, want %d", c.source, c.fps, c.every, got, c.want)
		}
	}
}

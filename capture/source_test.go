package capture

import (
	"strings"
	"testing"

	"github.com/clipd/clipd/frame"
)

func TestKindOf(t *testing.T) {
	for src, want := range map[string]Kind{
		"/dev/video0":                        KindV4L2,
		"/dev/v4l/by-id/usb-Logitech-video0": KindV4L2,
		"rtsp://cam.local/stream":            KindStream,
		"RTSPS://cam.local/stream":           KindStream,
		"https://example.com/live.m3u8":      KindStream,
		"rtmp://example.com/live":            KindStream,
		"srt://10.0.0.2:9000":                KindStream,
		"udp://239.0.0.1:1234":               KindStream,
		"testdata/clip.mkv":                  KindFile,
		"/srv/video/front.mp4":               KindFile,
		"pattern":                            KindPattern,
		"pattern?hold=15":                    KindPattern,
		"patterns.mp4":                       KindFile,
		"gst:videotestsrc":                   KindGStreamer,
	} {
		if got, err := KindOf(src); got != want || err != nil {
			t.Errorf("KindOf(%q) = %v, %v; want %v", src, got, err, want)
		}
	}
	for src, want := range map[string]string{
		"":                "must not be empty",
		"patern":          `did you mean the synthetic camera`,
		"Pattern":         `did you mean the synthetic camera`,
		"pattrn?hold=3":   `did you mean the synthetic camera`,
		"ftp://host/x":    `unsupported URL scheme "ftp"`,
		"file:///x.mp4":   `unsupported URL scheme "file"`,
		"mms://host/live": `unsupported URL scheme "mms"`,
	} {
		if _, err := KindOf(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("KindOf(%q): %v, want %q", src, err, want)
		}
	}
}

// Each kind takes the settings it can honour, and every refusal names the
// key it concerns, so that config errors point at the right line.
func TestValidateNamesTheKey(t *testing.T) {
	ok := []Config{
		{Source: "pattern", Width: 640, Height: 480, FPS: 10},
		{Source: "pattern", Format: frame.RGB24},
		{Source: "/dev/video0", Format: frame.MJPEG, Width: 1280, Height: 720, FPS: 30},
		{Source: "/dev/video0", Format: frame.NV12},
		{Source: "rtsp://cam/x", Format: frame.MJPEG},
		{Source: "clip.mp4", Format: frame.RGB24, Width: 320, Height: 240, Loop: true},
		{Source: "gst:videotestsrc", Format: frame.YUYV, Width: 64, Height: 48},
	}
	for _, cfg := range ok {
		if probs := Validate(cfg); len(probs) > 0 {
			t.Errorf("Validate(%+v) = %v, want none", cfg, probs)
		}
	}
	for _, tc := range []struct {
		cfg      Config
		key, msg string
	}{
		{Config{Source: "pattern", Width: 641, Height: 480}, "width", "must be even, got 641"},
		{Config{Source: "pattern", Width: 640, Height: 481}, "height", "must be even, got 481"},
		{Config{Source: "pattern", Format: frame.MJPEG}, "format", "pattern sources deliver rgb24 only, not mjpeg"},
		{Config{Source: "gst:videotestsrc", Format: frame.MJPEG, Width: 64, Height: 48}, "format", "gstreamer sources deliver nv12, yuyv or rgb24, not mjpeg"},
		{Config{Source: "/dev/video0", Format: frame.RGB24}, "format", "v4l2 sources deliver mjpeg, yuyv or nv12, not rgb24"},
		{Config{Source: "pattern", Width: 9000, Height: 10}, "width", "exceeds 8192x8192"},
		{Config{Source: "pattern", FPS: 241}, "fps", "between 1 and 240"},
		{Config{Source: "pattern", Loop: true}, "loop", "only applies to file sources, not pattern"},
		{Config{Source: "rtsp://cam/x", Loop: true}, "loop", "not stream"},
		{Config{Source: "pattern?hold=0"}, "source", "hold="},
		{Config{Source: "gst:a ! 'b", Width: 64, Height: 48}, "source", "unterminated ' quote"},
		{Config{Source: "patern"}, "source", "did you mean"},
	} {
		probs := Validate(tc.cfg)
		if len(probs) != 1 || probs[0].Key != tc.key || !strings.Contains(probs[0].Msg, tc.msg) {
			t.Errorf("Validate(%+v) = %v, want one %s problem containing %q", tc.cfg, probs, tc.key, tc.msg)
		}
	}
}

func TestDefaultSize(t *testing.T) {
	for kind, want := range map[Kind][2]int{
		KindV4L2: {1280, 720}, KindPattern: {1280, 720}, KindGStreamer: {1280, 720},
		KindStream: {0, 0}, KindFile: {0, 0},
	} {
		if w, h := kind.DefaultSize(); w != want[0] || h != want[1] {
			t.Errorf("%v.DefaultSize() = %dx%d, want %dx%d", kind, w, h, want[0], want[1])
		}
	}
}

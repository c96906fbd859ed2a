package capture

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
)

func needGStreamer(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("gst-launch-1.0")
	if err != nil {
		tb.Skip("gst-launch-1.0 is not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base)")
	}
	return path
}

func openGStreamer(t *testing.T, cfg Config) *gstSource {
	t.Helper()
	return openSource(t, cfg, newGStreamerSource)
}

// smpte is a live test source whose every frame is the same picture, so
// any frame can be compared with one rendered by gst-launch-1.0 directly.
const smpte = "videotestsrc is-live=true pattern=smpte75 ! video/x-raw,width=320,height=240,framerate=30/1"

func TestGStreamerDeliversFrames(t *testing.T) {
	gst := needGStreamer(t)
	for _, c := range []struct {
		format frame.Format
		caps   string
		bytes  int
	}{
		{0, "NV12", 160 * 120 * 3 / 2},
		{frame.RGB24, "RGB", 160 * 120 * 3},
		{frame.YUYV, "YUY2", 160 * 120 * 2},
	} {
		t.Run(c.caps, func(t *testing.T) {
			args := append([]string{"-q"}, strings.Fields(strings.Replace(smpte, "is-live=true", "num-buffers=1", 1))...)
			args = append(args, "!", "videoconvert", "!", "videoscale", "!", "video/x-raw,format="+c.caps+",width=160,height=120", "!", "fdsink", "fd=1")
			want, err := exec.Command(gst, args...).Output()
			if err != nil || len(want) != c.bytes {
				t.Fatalf("reference frame: %d bytes, %v", len(want), err)
			}
			s := openGStreamer(t, Config{Source: GStreamerPrefix + smpte, Format: c.format, Width: 160, Height: 120})
			for _, f := range nextFrames(t, s, 3) {
				wantFormat := c.format
				if wantFormat == 0 {
					wantFormat = frame.NV12
				}
				if f.Format != wantFormat || f.Width != 160 || f.Height != 120 || len(f.Data) != c.bytes {
					t.Fatalf("frame %d: %v %dx%d %d bytes", f.Seq, f.Format, f.Width, f.Height, len(f.Data))
				}
				if !bytes.Equal(f.Data, want) {
					t.Errorf("frame %d differs from gst-launch-1.0's own output", f.Seq)
				}
			}
			if st := s.Stats(); st.Restarts != 0 || st.Corrupt != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A pipeline that ends (end of stream) or fails is restarted, and the
// reason is kept: a camera pipeline has no legitimate end.
func TestGStreamerRestartsAfterEndOrError(t *testing.T) {
	needGStreamer(t)
	s := openGStreamer(t, fastRetry(Config{Source: "gst:videotestsrc num-buffers=3", Width: 64, Height: 48}))
	got := nextFrames(t, s, 7)
	if last := got[len(got)-1]; last.Seq < 7 {
		t.Fatalf("last seq %d", last.Seq)
	}
	if st := s.Stats(); st.Restarts < 2 || !strings.Contains(st.LastError, "reached its end") {
		t.Errorf("stats %+v: want restarts after each end of stream", st)
	}

	bad := openGStreamer(t, fastRetry(Config{Source: "gst:nosuchelement ! fakesink", Width: 64, Height: 48}))
	waitFor(t, "a failed start", func() bool { return bad.Stats().Restarts >= 1 })
	if st := bad.Stats(); !strings.Contains(st.LastError, "nosuchelement") {
		t.Errorf("LastError %q should carry gst-launch's reason", st.LastError)
	}
}

func TestGStreamerClosePromptly(t *testing.T) {
	needGStreamer(t)
	s := openGStreamer(t, Config{Source: GStreamerPrefix + smpte, Width: 64, Height: 48})
	nextFrames(t, s, 1)
	pid := int(s.pid.Load())
	start := time.Now()
	s.Close()
	t.Logf("Close took %v", time.Since(start))
	if pid == 0 || !processGone(pid) {
		t.Errorf("gst-launch-1.0 %d still exists after Close", pid)
	}
}

func TestGStreamerArgs(t *testing.T) {
	elements, err := SplitPipeline(`nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv`)
	if err != nil {
		t.Fatal(err)
	}
	got := gstArgs(elements, "NV12", 1280, 720, 10)
	want := []string{"-q", "nvarguscamerasrc", "sensor-id=0", "!", "video/x-raw(memory:NVMM),width=1280,height=720", "!", "nvvidconv",
		"!", "videorate", "drop-only=true", "max-rate=10",
		"!", "videoconvert", "!", "videoscale", "!", "video/x-raw,format=NV12,width=1280,height=720", "!", "fdsink", "fd=1", "sync=false"}
	if !slices.Equal(got, want) {
		t.Errorf("gstArgs =\n%q\nwant\n%q", got, want)
	}
	if got := gstArgs([]string{"videotestsrc"}, "RGB", 64, 48, 0); slices.Contains(got, "videorate") {
		t.Errorf("fps 0 must not limit the rate: %q", got)
	}
}

func TestSplitPipeline(t *testing.T) {
	for _, c := range []struct {
		in     string
		want   []string
		errSub string
	}{
		{"videotestsrc ! fakesink", []string{"videotestsrc", "!", "fakesink"}, ""},
		{"  filesrc location=\"/srv/my clip.mp4\"\t! decodebin ", []string{"filesrc", "location=/srv/my clip.mp4", "!", "decodebin"}, ""},
		{`rtspsrc location='rtsp://u:p w@cam/1' latency=0`, []string{"rtspsrc", "location=rtsp://u:p w@cam/1", "latency=0"}, ""},
		{`a "" b`, []string{"a", "", "b"}, ""},
		{`filesrc location="x`, nil, `unterminated " quote`},
		{"   ", nil, "empty"},
	} {
		got, err := SplitPipeline(c.in)
		if c.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), c.errSub) {
				t.Errorf("SplitPipeline(%q) error %v, want %q", c.in, err, c.errSub)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("SplitPipeline(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

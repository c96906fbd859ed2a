package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/syncbuf"
)

func needFFmpeg(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		tb.Skip("ffmpeg is not installed (apt-get install ffmpeg); skipping the ffmpeg source tests")
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		tb.Skip("ffprobe is not installed (it comes with Debian's ffmpeg package)")
	}
	return path
}

// makeVideo renders ffmpeg's test pattern into dir/name.
func makeVideo(tb testing.TB, dir, name, size string, rate int, seconds float64, codecArgs ...string) string {
	tb.Helper()
	out := filepath.Join(dir, name)
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
		"-i", fmt.Sprintf("testsrc=size=%s:rate=%d", size, rate), "-t", fmt.Sprint(seconds)}
	args = append(args, codecArgs...)
	args = append(args, "-y", out)
	if msg, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		tb.Fatalf("making %s: %v\n%s", name, err, msg)
	}
	return out
}

// decodeAll decodes a file with ffmpeg directly, as the reference for
// what the source should deliver.
func decodeAll(t *testing.T, path, pixFmt, size string) []byte {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-i", path}
	if size != "" {
		args = append(args, "-vf", "scale="+size)
	}
	args = append(args, "-pix_fmt", pixFmt, "-f", "rawvideo", "-")
	out, err := exec.Command("ffmpeg", args...).Output()
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return out
}

// openSource starts a source of one implementation, closed at the end of
// the test.
func openSource[S Source](t *testing.T, cfg Config, open func(Config, *slog.Logger) (S, error)) S {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s, err := open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openFFmpeg(t *testing.T, cfg Config) *ffmpegSource {
	t.Helper()
	return openSource(t, cfg, newFFmpegSource)
}

// drain takes frames until Next fails and returns them with the error.
func drain(t *testing.T, s Source) ([]*frame.Frame, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*frame.Frame
	for {
		f, err := s.Next(ctx)
		if err != nil {
			return got, err
		}
		got = append(got, f)
	}
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestFFmpegFilePlaysToTheEnd(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "clip.mkv", "160x120", 25, 1)
	want := decodeAll(t, video, "rgb24", "")
	const frameSize = 160 * 120 * 3
	if len(want) != 25*frameSize {
		t.Fatalf("reference decode gave %d bytes, want 25 frames", len(want))
	}
	s := openFFmpeg(t, Config{Source: video})
	got, err := drain(t, s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("Next at the end: %v, want io.EOF", err)
	}
	if len(got) == 0 {
		t.Fatal("no frames")
	}
	var prev uint64
	for _, f := range got {
		if f.Seq <= prev || f.Seq > 25 {
			t.Fatalf("seq %d after %d", f.Seq, prev)
		}
		prev = f.Seq
		if f.Format != frame.RGB24 || f.Width != 160 || f.Height != 120 || len(f.Data) != frameSize {
			t.Fatalf("frame %d: %v %dx%d %d bytes, want rgb24 160x120 (probed)", f.Seq, f.Format, f.Width, f.Height, len(f.Data))
		}
		ref := want[(f.Seq-1)*frameSize : f.Seq*frameSize]
		if !bytes.Equal(f.Data, ref) {
			t.Errorf("frame %d differs from ffmpeg's own decode", f.Seq)
		}
		if f.Time.IsZero() {
			t.Errorf("frame %d has no time", f.Seq)
		}
	}
	// -re plays the file at its own rate, like a camera; allow for a
	// scheduler that delivers late, never early.
	first, last := got[0], got[len(got)-1]
	if span, min := last.Time.Sub(first.Time), time.Duration(last.Seq-first.Seq)*time.Second/25/2; span < min {
		t.Errorf("frames %d..%d arrived within %v, want at least %v (is -re missing?)", first.Seq, last.Seq, span, min)
	}
	st := s.Stats()
	if st.Captured != 25 || st.Restarts != 0 || st.Corrupt != 0 {
		t.Errorf("stats %+v: want 25 captured, no restarts, none corrupt", st)
	}
	if st.Captured != uint64(len(got))+st.Dropped {
		t.Errorf("captured %d != delivered %d + dropped %d", st.Captured, len(got), st.Dropped)
	}
}

func TestFFmpegScalesAndConverts(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "clip.mkv", "160x120", 25, 0.4)
	for _, c := range []struct {
		format frame.Format
		pixFmt string
		bytes  int
	}{
		{frame.YUYV, "yuyv422", 64 * 48 * 2},
		{frame.NV12, "nv12", 64 * 48 * 3 / 2},
		{frame.RGB24, "rgb24", 64 * 48 * 3},
	} {
		t.Run(c.format.String(), func(t *testing.T) {
			want := decodeAll(t, video, c.pixFmt, "64:48")
			s := openFFmpeg(t, Config{Source: video, Format: c.format, Width: 64, Height: 48, Unthrottled: true})
			got, err := drain(t, s)
			if !errors.Is(err, io.EOF) || len(got) == 0 {
				t.Fatalf("%d frames, end %v; want some and io.EOF", len(got), err)
			}
			for _, f := range got {
				if f.Format != c.format || f.Width != 64 || f.Height != 48 || len(f.Data) != c.bytes {
					t.Fatalf("frame %d: %v %dx%d %d bytes", f.Seq, f.Format, f.Width, f.Height, len(f.Data))
				}
				if !bytes.Equal(f.Data, want[(f.Seq-1)*uint64(c.bytes):f.Seq*uint64(c.bytes)]) {
					t.Errorf("frame %d differs from ffmpeg's own conversion", f.Seq)
				}
			}
			if st := s.Stats(); st.Captured != 10 {
				t.Errorf("captured %d, want 10", st.Captured)
			}
		})
	}
}

// splitJPEGs returns the images of an MJPEG file exactly as the file holds
// them, as the reference for passthrough.
func splitJPEGs(t *testing.T, path string) [][]byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", path,
		"-c:v", "copy", "-f", "image2pipe", "-").Output()
	if err != nil {
		t.Fatalf("copying the images of %s: %v", path, err)
	}
	// ffmpeg's own JPEGs carry no thumbnails, so EOI followed by SOI only
	// occurs between images.
	var images [][]byte
	for len(out) > 0 {
		i := bytes.Index(out, []byte{0xFF, 0xD9, 0xFF, 0xD8})
		if i < 0 {
			images = append(images, out)
			break
		}
		images = append(images, out[:i+2])
		out = out[i+2:]
	}
	return images
}

func TestFFmpegMJPEGFilePassesImagesThrough(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "hd.avi", "1280x720", 30, 0.5, "-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p")
	want := splitJPEGs(t, video)
	if len(want) != 15 {
		t.Fatalf("the file holds %d images, want 15", len(want))
	}
	// auto, at the stream's size (probed or given): no decoding in ffmpeg.
	for _, cfg := range []Config{{Source: video}, {Source: video, Width: 1280, Height: 720}, {Source: video, Format: frame.MJPEG}} {
		s := openFFmpeg(t, cfg)
		got, err := drain(t, s)
		if !errors.Is(err, io.EOF) || len(got) == 0 {
			t.Fatalf("%+v: %d frames, end %v", cfg, len(got), err)
		}
		for _, f := range got {
			if f.Format != frame.MJPEG || f.Width != 1280 || f.Height != 720 {
				t.Fatalf("%+v: frame %d: %v %dx%d, want mjpeg 1280x720", cfg, f.Seq, f.Format, f.Width, f.Height)
			}
			if !bytes.Equal(f.Data, want[f.Seq-1]) {
				t.Errorf("%+v: frame %d (%d bytes) differs from image %d of the file (%d bytes)", cfg, f.Seq, len(f.Data), f.Seq, len(want[f.Seq-1]))
			}
		}
		if st := s.Stats(); st.Captured != 15 || st.Corrupt != 0 || st.Format != frame.MJPEG {
			t.Errorf("%+v: stats %+v, want 15 mjpeg captured, none corrupt", cfg, st)
		}
	}
}

func TestFFmpegMJPEGFileDecodedWhenScaledOrAsked(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "hd.avi", "320x240", 30, 0.2, "-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p")
	for _, c := range []struct {
		cfg           Config
		width, height int
	}{
		{Config{Source: video, Width: 160, Height: 120, Unthrottled: true}, 160, 120},
		{Config{Source: video, Format: frame.RGB24, Unthrottled: true}, 320, 240},
	} {
		want := decodeAll(t, video, "rgb24", fmt.Sprintf("%d:%d", c.width, c.height))
		size := c.width * c.height * 3
		got, err := drain(t, openFFmpeg(t, c.cfg))
		if !errors.Is(err, io.EOF) || len(got) == 0 {
			t.Fatalf("%+v: %d frames, end %v", c.cfg, len(got), err)
		}
		for _, f := range got {
			if f.Format != frame.RGB24 || f.Width != c.width || f.Height != c.height {
				t.Fatalf("%+v: frame %d: %v %dx%d", c.cfg, f.Seq, f.Format, f.Width, f.Height)
			}
			if !bytes.Equal(f.Data, want[(int(f.Seq)-1)*size:int(f.Seq)*size]) {
				t.Errorf("%+v: frame %d differs from ffmpeg's own decode", c.cfg, f.Seq)
			}
		}
	}
}

// Passthrough cannot turn another codec into JPEG or scale: the source
// keeps retrying (the stream may yet be reconfigured) and says why.
func TestFFmpegMJPEGFormatRefusesWhatItCannotPass(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	ffv1 := makeVideo(t, dir, "clip.mkv", "64x48", 25, 0.2, "-c:v", "ffv1")
	mjpeg := makeVideo(t, dir, "clip.avi", "64x48", 25, 0.2, "-c:v", "mjpeg")
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Source: ffv1, Format: frame.MJPEG}, "this stream is ffv1"},
		{Config{Source: mjpeg, Format: frame.MJPEG, Width: 32, Height: 24}, "cannot scale the 64x48 stream to 32x24"},
	} {
		s := openFFmpeg(t, fastRetry(c.cfg))
		waitFor(t, "a failed start", func() bool { return s.Stats().LastError != "" })
		if st := s.Stats(); !strings.Contains(st.LastError, c.want) || !strings.Contains(st.LastError, c.cfg.Source) {
			t.Errorf("LastError %q, want it to name %s and say %q", st.LastError, c.cfg.Source, c.want)
		}
	}
}

// An HTTP MJPEG camera (multipart/x-mixed-replace, as mjpg-streamer, ESP32
// cameras and many IP cameras serve it) passes its images through as sent.
func TestFFmpegHTTPMJPEGStreamPassesImagesThrough(t *testing.T) {
	needFFmpeg(t)
	var images [][]byte
	for i := range 5 {
		img := image.NewRGBA(image.Rect(0, 0, 96, 64))
		for p := range img.Pix {
			img.Pix[p] = uint8(p*(i+3)) | 0x0F
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, nil); err != nil {
			t.Fatal(err)
		}
		images = append(images, b.Bytes())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		for i := 0; r.Context().Err() == nil; i++ {
			img := images[i%len(images)]
			fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(img))
			w.Write(img)
			io.WriteString(w, "\r\n")
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}))
	// A cleanup, not a defer: it must run after the source's own cleanup
	// has stopped ffmpeg, whose connection would keep Close waiting.
	t.Cleanup(srv.Close)
	s := openFFmpeg(t, Config{Source: srv.URL + "/mjpg"})
	got := nextFrames(t, s, 12)
	for _, f := range got {
		if f.Format != frame.MJPEG || f.Width != 96 || f.Height != 64 {
			t.Fatalf("frame %d: %v %dx%d, want mjpeg 96x64", f.Seq, f.Format, f.Width, f.Height)
		}
		if !slices.ContainsFunc(images, func(img []byte) bool { return bytes.Equal(img, f.Data) }) {
			t.Errorf("frame %d (%d bytes) is none of the images served", f.Seq, len(f.Data))
		}
	}
	if st := s.Stats(); st.Corrupt != 0 || st.Restarts != 0 {
		t.Errorf("stats %+v: want no corrupt image, no restart", st)
	}
}

func TestChooseOutput(t *testing.T) {
	mjpeg720 := streamInfo{codec: "mjpeg", width: 1280, height: 720}
	h264odd := streamInfo{codec: "h264", width: 641, height: 479}
	for _, c := range []struct {
		want         frame.Format
		cfgW, cfgH   int
		in           streamInfo
		format       frame.Format
		pixFmt       string
		width, heigh int
		errSub       string
	}{
		{0, 0, 0, mjpeg720, frame.MJPEG, "", 1280, 720, ""},
		{0, 1280, 720, mjpeg720, frame.MJPEG, "", 1280, 720, ""},
		{0, 640, 360, mjpeg720, frame.RGB24, "rgb24", 640, 360, ""},
		{0, 0, 0, h264odd, frame.RGB24, "rgb24", 640, 478, ""},
		// Decoded streams above 720 lines come down to 720, aspect kept;
		// passed-through MJPEG is never scaled.
		{0, 0, 0, streamInfo{"h264", 3840, 2160}, frame.RGB24, "rgb24", 1280, 720, ""},
		{0, 0, 0, streamInfo{"hevc", 1440, 1080}, frame.RGB24, "rgb24", 960, 720, ""},
		{frame.NV12, 0, 0, streamInfo{"h264", 1080, 1920}, frame.NV12, "nv12", 720, 1280, ""},
		{0, 0, 0, streamInfo{"h264", 2592, 1944}, frame.RGB24, "rgb24", 960, 720, ""},
		{0, 0, 0, streamInfo{"h264", 1280, 720}, frame.RGB24, "rgb24", 1280, 720, ""},
		{0, 0, 0, streamInfo{"mjpeg", 3840, 2160}, frame.MJPEG, "", 3840, 2160, ""},
		{0, 1920, 1080, streamInfo{"h264", 3840, 2160}, frame.RGB24, "rgb24", 1920, 1080, ""},
		{frame.NV12, 0, 0, mjpeg720, frame.NV12, "nv12", 1280, 720, ""},
		{frame.YUYV, 64, 48, h264odd, frame.YUYV, "yuyv422", 64, 48, ""},
		{frame.MJPEG, 0, 0, mjpeg720, frame.MJPEG, "", 1280, 720, ""},
		{frame.MJPEG, 0, 0, h264odd, 0, "", 0, 0, "this stream is h264"},
		{frame.MJPEG, 640, 360, mjpeg720, 0, "", 0, 0, "cannot scale the 1280x720 stream to 640x360"},
		// A stream may claim any size: the longer side comes down to
		// MaxSide too, aspect kept, even and at least 2; passthrough,
		// which cannot scale, is refused (auto decodes instead).
		{0, 0, 0, streamInfo{"h264", 720, 300000}, frame.RGB24, "rgb24", 20, 8192, ""},
		{0, 0, 0, streamInfo{"h264", 16000, 720}, frame.RGB24, "rgb24", 8192, 368, ""},
		{0, 0, 0, streamInfo{"h264", 2, 1 << 20}, frame.RGB24, "rgb24", 2, 8192, ""},
		{0, 0, 0, streamInfo{"h264", 10000, 5000}, frame.RGB24, "rgb24", 1440, 720, ""},
		{0, 0, 0, streamInfo{"mjpeg", 720, 300000}, frame.RGB24, "rgb24", 20, 8192, ""},
		{0, 0, 0, streamInfo{"mjpeg", 8192, 720}, frame.MJPEG, "", 8192, 720, ""},
		{frame.MJPEG, 0, 0, streamInfo{"mjpeg", 9000, 720}, 0, "", 0, 0, "9000x720, more than 8192 on a side"},
		{0, 640, 480, streamInfo{"h264", 720, 300000}, frame.RGB24, "rgb24", 640, 480, ""},
	} {
		format, pixFmt, w, h, err := chooseOutput(c.want, c.cfgW, c.cfgH, c.in)
		if c.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), c.errSub) {
				t.Errorf("chooseOutput(%v, %dx%d, %+v) error %v, want %q", c.want, c.cfgW, c.cfgH, c.in, err, c.errSub)
			}
			continue
		}
		if err != nil || format != c.format || pixFmt != c.pixFmt || w != c.width || h != c.heigh {
			t.Errorf("chooseOutput(%v, %dx%d, %+v) = %v %q %dx%d %v", c.want, c.cfgW, c.cfgH, c.in, format, pixFmt, w, h, err)
		}
	}
}

func TestRateGate(t *testing.T) {
	start := time.Unix(1000, 0)
	g := newRateGate(5, true)
	admitted := 0
	// A 30 frames/s input for 10 s.
	for i := range 300 {
		if g.admit(start.Add(time.Duration(i) * time.Second / 30)) {
			admitted++
		}
	}
	if admitted < 49 || admitted > 51 {
		t.Errorf("admitted %d of 300 frames over 10 s at fps 5, want about 50", admitted)
	}
	for _, g := range []*rateGate{newRateGate(0, true), newRateGate(5, false)} {
		for i := range 10 {
			if !g.admit(start) {
				t.Fatalf("gate %+v refused frame %d", g, i)
			}
		}
	}
}

func TestFFmpegLoopsFiles(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "short.mkv", "64x48", 25, 0.2) // 5 frames
	s := openFFmpeg(t, Config{Source: video, Loop: true, Unthrottled: true})
	got := nextFrames(t, s, 23)
	if last := got[len(got)-1]; last.Seq < 23 {
		t.Fatalf("last seq %d", last.Seq)
	}
	if st := s.Stats(); st.Restarts != 0 {
		t.Errorf("stats %+v: looping must not restart ffmpeg", st)
	}
}

// stallingFFmpeg writes a wrapper that runs the real ffmpeg and then, like
// a hung network stream, keeps the pipe open without writing.
func stallingFFmpeg(t *testing.T, real string) string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "ffmpeg")
	body := fmt.Sprintf("#!/bin/sh\n%q \"$@\"\nexec sleep 600\n", real)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func TestFFmpegWatchdogRestartsAStalledProcess(t *testing.T) {
	real := needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "short.mkv", "64x48", 25, 0.2) // 5 frames
	s := openFFmpeg(t, fastRetry(Config{
		Source: video, Width: 64, Height: 48, Unthrottled: true,
		FFmpegPath: stallingFFmpeg(t, real), StallTimeout: 300 * time.Millisecond,
	}))
	nextFrames(t, s, 5)
	stalledPid := int(s.pid.Load())
	got := nextFrames(t, s, 10)
	if last := got[len(got)-1]; last.Seq < 10 {
		t.Fatalf("last seq %d", last.Seq)
	}
	st := s.Stats()
	if st.Restarts < 1 || !strings.Contains(st.LastError, "no frame for") {
		t.Errorf("stats %+v: want a restart after a stall", st)
	}
	if stalledPid == 0 || !processGone(stalledPid) {
		t.Errorf("stalled process %d was not killed and reaped", stalledPid)
	}
}

func TestFFmpegKilledProcessRestarts(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "clip.mkv", "64x48", 25, 1)
	s := openFFmpeg(t, fastRetry(Config{Source: video, Loop: true}))
	before := nextFrames(t, s, 2)
	pid := int(s.pid.Load())
	if pid == 0 {
		t.Fatal("no ffmpeg pid while frames flow")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a restart", func() bool { return s.Stats().Restarts >= 1 })
	nextFrames(t, s, before[len(before)-1].Seq+3)
	if newPid := int(s.pid.Load()); newPid == pid || newPid == 0 {
		t.Errorf("pid after restart %d, killed one was %d", newPid, pid)
	}
	if st := s.Stats(); !strings.Contains(st.LastError, "killed") {
		t.Errorf("LastError %q does not say the process was killed", st.LastError)
	}
}

func TestFFmpegCloseStopsTheProcess(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "clip.mkv", "64x48", 25, 1)
	s := openFFmpeg(t, Config{Source: video, Loop: true})
	nextFrames(t, s, 1)
	pid := int(s.pid.Load())
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close took %v", time.Since(start))
	if !processGone(pid) {
		t.Errorf("ffmpeg %d still exists after Close", pid)
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
}

func TestFFmpegUnreachableStreamKeepsRetrying(t *testing.T) {
	needFFmpeg(t)
	// Port 1 on loopback refuses connections at once.
	s := openFFmpeg(t, fastRetry(Config{Source: "rtsp://127.0.0.1:1/stream", Width: 64, Height: 48}))
	waitFor(t, "two restarts", func() bool { return s.Stats().Restarts >= 2 })
	st := s.Stats()
	if !strings.Contains(strings.ToLower(st.LastError), "connection refused") {
		t.Errorf("LastError %q should carry ffmpeg's reason", st.LastError)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next on a down stream: %v, want the context's deadline", err)
	}
}

func TestFFmpegArgs(t *testing.T) {
	has := func(args []string, seq ...string) bool {
		for i := range args {
			if slices.Equal(args[i:min(i+len(seq), len(args))], seq) {
				return true
			}
		}
		return false
	}
	rtsp := ffmpegArgs(Config{Source: "rtsp://cam/1", FPS: 5}, 640, 480, "rgb24")
	for _, want := range [][]string{{"-rtsp_transport", "tcp"}, {"-fflags", "nobuffer"}, {"-flags", "low_delay"}, {"-vf", "fps=5,scale=640:480"}, {"-f", "rawvideo", "pipe:1"}} {
		if !has(rtsp, want...) {
			t.Errorf("rtsp args %q lack %q", rtsp, want)
		}
	}
	if has(rtsp, "-re") {
		t.Errorf("rtsp args %q must not throttle", rtsp)
	}
	copied := ffmpegArgs(Config{Source: "cam.avi", FPS: 5}, 640, 480, "")
	if !has(copied, "-c:v", "copy", "-f", "mjpeg", "pipe:1") || has(copied, "-vf") || has(copied, "-pix_fmt") {
		t.Errorf("passthrough args %q", copied)
	}
	file := ffmpegArgs(Config{Source: "a.mp4", Loop: true}, 64, 48, "yuyv422")
	for _, want := range [][]string{{"-re"}, {"-stream_loop", "-1"}, {"-pix_fmt", "yuyv422"}} {
		if !has(file, want...) {
			t.Errorf("file args %q lack %q", file, want)
		}
	}
	if fast := ffmpegArgs(Config{Source: "a.mp4", Unthrottled: true}, 64, 48, "rgb24"); has(fast, "-re") || has(fast, "-stream_loop") {
		t.Errorf("unthrottled, unlooped args %q", fast)
	}
	if http := ffmpegArgs(Config{Source: "https://x/live.m3u8"}, 64, 48, "rgb24"); has(http, "-rtsp_transport") || !has(http, "-fflags", "nobuffer") {
		t.Errorf("http args %q", http)
	}
}

func TestElide(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"0123456789abcdefghij", 10, "01234…(20 bytes)…fghij"},
		{"ééééééé", 6, "é…(14 bytes)…é"}, // no rune split: 3 bytes of each end hold one é and a half
	} {
		if got := elide(tc.in, tc.n); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("elide(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestParseProbe(t *testing.T) {
	for _, c := range []struct {
		out    string
		want   streamInfo
		errSub string
	}{
		{"codec_name=mjpeg\nwidth=1280\nheight=720\n", streamInfo{"mjpeg", 1280, 720}, ""},
		{"width=640\r\nheight=480\r\ncodec_name=h264\r\n", streamInfo{"h264", 640, 480}, ""},
		{"codec_name=h264\nwidth=640\nheight=480\ncodec_name=hevc\nwidth=320\nheight=240\n", streamInfo{"h264", 640, 480}, ""},
		{"", streamInfo{}, "no video stream"},
		{"codec_name=h264\nwidth=N/A\nheight=N/A\n", streamInfo{}, "bad size N/AxN/A"},
		{"codec_name=h264\nwidth=0\nheight=480\n", streamInfo{}, "bad size 0x480"},
		{"codec_name=h264\nwidth=99999999999999999999\nheight=480\n", streamInfo{}, "bad size 99999999999999999999x480"},
		{"codec_name=h264\nwidth=2000000\nheight=480\n", streamInfo{}, "bad size 2000000x480"},
		{"codec_name=" + strings.Repeat("h", 1000) + "\nwidth=64\nheight=48\n", streamInfo{strings.Repeat("h", 32), 64, 48}, ""},
	} {
		got, err := parseProbe(c.out)
		if c.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), c.errSub) {
				t.Errorf("parseProbe(%q) error %v, want %q", c.out, err, c.errSub)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseProbe(%q) = %+v, %v; want %+v", c.out, got, err, c.want)
		}
	}
}

// What ffprobe prints is read bounded and quoted in errors (the camera's
// last error, sent to every client) only in part: with the real ffprobe,
// whose error repeats a long URL, and with a stand-in that floods its
// stdout and stderr with megabytes.
func TestProbeOutputIsBounded(t *testing.T) {
	needFFmpeg(t)
	// (ffprobe itself cuts its messages near 64 KiB.)
	src := "http://127.0.0.1:1/" + strings.Repeat("a", 20<<10)
	_, err := probeStream(context.Background(), Config{Source: src, FFmpegPath: "ffmpeg"})
	if err == nil || !strings.Contains(err.Error(), "bytes)…") || !strings.HasSuffix(err.Error(), "Connection refused") {
		t.Fatalf("probe of a refused URL: %.400v", err)
	}
	// The source itself is the configured one; what ffprobe said of it is cut.
	if said := len(err.Error()) - len(src); said > probeQuoteBytes+100 {
		t.Errorf("the error quotes %d bytes of ffprobe's output", said)
	}

	dir := t.TempDir()
	script := filepath.Join(dir, "ffprobe")
	flood := "head -c 20000000 /dev/zero | tr '\\0' x"
	for _, tc := range []struct{ body, want string }{
		{flood + "\necho\necho codec_name=h264\nexit 0\n", "no video stream"},
		{flood + " >&2\necho >&2\necho ' the reason ' >&2\necho >&2\nexit 1\n", "exit status 1: the reason"},
		{"echo start >&2\n" + flood + " >&2\nexit 1\n", "bytes)…xxx"},
	} {
		if err := os.WriteFile(script, []byte("#!/bin/sh\n"+tc.body), 0o755); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := probeStream(context.Background(), Config{Source: "cam.mp4", FFmpegPath: filepath.Join(dir, "ffmpeg")})
		if err == nil || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > probeQuoteBytes+100 {
			t.Errorf("%q: error %.500v, want %q in at most %d bytes", tc.body, err, tc.want, probeQuoteBytes+100)
		}
		t.Logf("20 MB of output read in %v", time.Since(start).Round(time.Millisecond))
	}
}

func TestStderrLogIsRateLimited(t *testing.T) {
	var logged bytes.Buffer
	l := newStderrLog("ffmpeg", slog.New(slog.NewTextHandler(&logged, nil)))
	// Dropped before it could count against the window.
	l.Write([]byte("[swscaler @ 0x5] deprecated pixel format used, make sure you did set range correctly\n"))
	for i := range 30 {
		fmt.Fprintf(l, "[rtsp @ 0x1] packet %d lost\r", i)
	}
	l.Write([]byte("Connection ref"))
	l.Write([]byte("used\n"))
	if n := strings.Count(logged.String(), "packet"); n != stderrLinesPerWindow {
		t.Errorf("%d lines logged, want %d:\n%s", n, stderrLinesPerWindow, logged.String())
	}
	if strings.Contains(logged.String(), "deprecated pixel format") {
		t.Errorf("a harmless swscale warning was logged:\n%s", logged.String())
	}
	if got := l.lastLine(); got != ": Connection refused" {
		t.Errorf("lastLine %q", got)
	}
}

// BenchmarkFFmpegMJPEG720pFile reads a 1280x720 MJPEG file as fast as
// ffmpeg delivers it: its JPEG images passed through (auto), or decoded by
// ffmpeg to RGB24. Decoding the passed-through images is preprocessing's
// work, measured there.
func BenchmarkFFmpegMJPEG720pFile(b *testing.B) {
	needFFmpeg(b)
	video := makeVideo(b, b.TempDir(), "hd.avi", "1280x720", 30, 2, "-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p")
	for _, format := range []frame.Format{0, frame.RGB24} {
		name := "passthrough"
		if format != 0 {
			name = "decoded-to-" + format.String()
		}
		b.Run(name, func(b *testing.B) {
			cfg, err := Config{Source: video, Format: format, Loop: true, Unthrottled: true}.withDefaults()
			if err != nil {
				b.Fatal(err)
			}
			s, err := newFFmpegSource(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if _, err := s.Next(ctx); err != nil { // ffprobe and ffmpeg start-up
				b.Fatal(err)
			}
			startCaptured := s.Stats().Captured
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := s.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start).Seconds()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed, "delivered_frames/s")
			b.ReportMetric(float64(s.Stats().Captured-startCaptured)/elapsed, "captured_frames/s")
		})
	}
}

// Closing a running ffmpeg source makes ffmpeg report "Broken pipe" for
// the frames it still had: that is the stop working, not a warning. Log
// lines name the source, not the camera.
func TestFFmpegCleanStopIsNotAWarning(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "clip.mkv", "320x240", 25, 2)
	var logged syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Several runs: whether ffmpeg is mid-write when the pipe closes is
	// timing.
	for range 4 {
		s, err := Open(Config{Name: "front", Source: video, Loop: true}, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for range 2 {
			if _, err := s.Next(ctx); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		s.Close()
	}
	out := logged.String()
	if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("a clean stop logged warnings:\n%s", out)
	}
	if !strings.Contains(out, "source="+video) || strings.Contains(out, "source=front") {
		t.Errorf("log lines do not carry source=%s:\n%s", video, out)
	}
}

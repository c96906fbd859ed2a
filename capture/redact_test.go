package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/syncbuf"
)

func TestRedact(t *testing.T) {
	for _, c := range []struct{ source, want string }{
		{"rtsp://admin:s3cret@cam.lan:554/stream1", "rtsp://admin:xxxxx@cam.lan:554/stream1"},
		{"https://viewer:pa%3Ass@cam/mjpg?res=hd", "https://viewer:xxxxx@cam/mjpg?res=hd"},
		// url.Parse refuses the escape; ffmpeg would pass it on as it is.
		{"rtsp://admin:100%zz@cam/1", "rtsp://admin:xxxxx@cam/1"},
		{"rtsp://admin@cam/1", "rtsp://admin@cam/1"}, // a user, no password
		{"rtsp://cam/1?user=a@b", "rtsp://cam/1?user=a@b"},
		{"/dev/video0", "/dev/video0"},
		{"pattern?hold=5", "pattern?hold=5"},
		{"/srv/clips/a:b@c.mp4", "/srv/clips/a:b@c.mp4"},
		{"gst:rtspsrc location=rtsp://cam/1 ! decodebin", "gst:rtspsrc location=rtsp://cam/1 ! decodebin"},
	} {
		if got := Redact(c.source); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.source, got, c.want)
		}
	}
	const src = "rtsp://admin:s3cret@cam/1"
	if got := RedactIn("probe "+src+": exit status 1: "+src+": Connection refused", src); strings.Contains(got, "s3cret") {
		t.Errorf("RedactIn left the password: %s", got)
	}
}

// Every line of a source's log, the attributes it was made with and
// those of each line, says the URL without its password.
func TestRedactLog(t *testing.T) {
	const src = "rtsp://admin:s3cret@cam/1"
	var buf syncbuf.Buffer
	log := redactLog(slog.New(slog.NewTextHandler(&buf, nil)), src).With("source", src)
	log.WithGroup("helper").Warn("ffmpeg: "+src+": 401 Unauthorized", "err", errors.New("probe "+src+": exit status 1"),
		slog.Group("run", "args", "-i "+src), "frames", 0)
	out := buf.String()
	if strings.Contains(out, "s3cret") || strings.Count(out, "admin:xxxxx@cam/1") != 4 {
		t.Errorf("want every quote of the source redacted:\n%s", out)
	}
	if plain := redactLog(slog.Default(), "rtsp://cam/1"); plain != slog.Default() {
		t.Error("a source without a password got a redacting logger")
	}
}

// A real ffmpeg source on an unreachable camera: its failures, in the
// log and in Stats.LastError (which status shows), never show the
// password.
func TestFFmpegFailuresDoNotShowThePassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // refused from now on
	src := fmt.Sprintf("rtsp://admin:s3cret@127.0.0.1:%d/stream1", port)
	var logged syncbuf.Buffer
	s, err := Open(Config{Name: "front", Source: src, RetryMin: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(15 * time.Second)
	for s.Stats().Restarts < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no restarts within 15s: %+v\n%s", s.Stats(), logged.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := s.Stats()
	if st.LastError == "" || strings.Contains(st.LastError, "s3cret") {
		t.Errorf("LastError %q: want the failure without the password", st.LastError)
	}
	if out := logged.String(); strings.Contains(out, "s3cret") || !strings.Contains(out, "admin:xxxxx@127.0.0.1") {
		t.Errorf("the log shows the password, or no source at all:\n%s", out)
	}
}

package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clipd/clipd/frame"
)

// The ffmpeg source runs one ffmpeg process at a time that decodes the
// input, scales it to the frame size and writes raw frames to a pipe
// (-f rawvideo). RGB24 is the default output: it costs 3 bytes a pixel on
// a local pipe (80 MB/s at 1280x720x30, far below what a pipe carries)
// and spares preprocessing a colour conversion; YUYV (yuyv422) or NV12
// can be asked for through Config.Format. MJPEG output is not offered:
// ffmpeg has already decoded the stream, re-encoding would only lose
// quality.
//
// When Config gives no size the stream's own size is probed with ffprobe
// before the first start, which keeps CLIP's preprocessing the only
// resize; restarts keep that size, so a stream that changes resolution is
// scaled to its first one. Rotation metadata is not applied to the probed
// size (a rotated phone video comes out squashed: give Width/Height).

const (
	// ffmpegKillGrace is how long ffmpeg may take to exit after SIGTERM
	// before it is killed.
	ffmpegKillGrace = 2 * time.Second
	// stderrLinesPerWindow limits how many ffmpeg stderr lines reach the
	// log per stderrWindow; a broken stream can print one a frame.
	stderrLinesPerWindow = 10
	stderrWindow         = 10 * time.Second
)

type ffmpegSource struct {
	runner
	cfg    Config
	log    *slog.Logger
	format frame.Format
	pixFmt string
	// width and height are fixed by Config or probed before a start.
	width, height int
	seq           uint64
	// pid is the running ffmpeg's process id (0 between runs); tests use
	// it to kill the process from outside.
	pid atomic.Int64
}

func isRTSP(src string) bool {
	return strings.HasPrefix(src, "rtsp://") || strings.HasPrefix(src, "rtsps://")
}

func isNetwork(src string) bool {
	return isRTSP(src) || strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") ||
		strings.HasPrefix(src, "rtmp://") || strings.HasPrefix(src, "udp://") || strings.HasPrefix(src, "srt://")
}

func newFFmpegSource(cfg Config, log *slog.Logger) (*ffmpegSource, error) {
	s := &ffmpegSource{runner: newRunner(), cfg: cfg, log: log.With("kind", "ffmpeg"), width: cfg.Width, height: cfg.Height}
	switch cfg.Format {
	case 0, frame.RGB24:
		s.format, s.pixFmt = frame.RGB24, "rgb24"
	case frame.YUYV:
		s.format, s.pixFmt = frame.YUYV, "yuyv422"
	case frame.NV12:
		s.format, s.pixFmt = frame.NV12, "nv12"
	default:
		return nil, fmt.Errorf("capture %s: format: ffmpeg sources deliver rgb24, yuyv or nv12, not %v", cfg.Name, cfg.Format)
	}
	if _, err := exec.LookPath(cfg.FFmpegPath); err != nil {
		return nil, fmt.Errorf("capture %s: ffmpeg: %w", cfg.Name, err)
	}
	if !isNetwork(cfg.Source) {
		if _, err := os.Stat(cfg.Source); err != nil {
			return nil, fmt.Errorf("capture %s: source: %w", cfg.Name, err)
		}
	}
	s.start(s.run)
	return s, nil
}

func (s *ffmpegSource) frameBytes() int {
	switch s.format {
	case frame.YUYV:
		return s.width * s.height * 2
	case frame.NV12:
		return s.width * s.height * 3 / 2
	}
	return s.width * s.height * 3
}

// ffmpegArgs builds the command line for one run.
func ffmpegArgs(cfg Config, width, height int, pixFmt string) []string {
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "warning"}
	src := cfg.Source
	switch {
	case isNetwork(src):
		// Show the newest picture, not a buffered past one.
		args = append(args, "-fflags", "nobuffer", "-flags", "low_delay")
		if isRTSP(src) {
			// UDP loses packets (smeared frames) behind NAT and on
			// busy links; TCP interleaving does not.
			args = append(args, "-rtsp_transport", "tcp")
		}
	default:
		if !cfg.Unthrottled {
			args = append(args, "-re") // play like a camera would deliver
		}
		if cfg.Loop {
			args = append(args, "-stream_loop", "-1")
		}
	}
	filter := fmt.Sprintf("scale=%d:%d", width, height)
	if cfg.FPS > 0 {
		filter += fmt.Sprintf(",fps=%d", cfg.FPS)
	}
	args = append(args, "-i", src, "-an", "-sn", "-dn", "-vf", filter,
		"-pix_fmt", pixFmt, "-f", "rawvideo", "pipe:1")
	return args
}

func (s *ffmpegSource) run() {
	s.superviseSessions(s.cfg, s.log, "ffmpeg", s.runOnce, func(frames int) bool {
		// A clean exit is the end of a file that is not looped.
		s.log.Info("input finished", "frames", frames)
		return true
	})
}

// runOnce runs one ffmpeg process to its end. It returns nil only when
// ffmpeg exited cleanly on a file that is not looped.
func (s *ffmpegSource) runOnce() (frames int, err error) {
	if s.width == 0 {
		w, h, err := probeSize(s.ctx, s.cfg)
		if err != nil {
			return 0, err
		}
		// Chroma-subsampled outputs need even sizes; scaling by at most
		// a pixel is harmless for RGB too.
		s.width, s.height = w&^1, h&^1
		s.log.Info("probed stream size", "width", w, "height", h)
	}
	s.box.setFormat(s.format, s.width, s.height)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.FFmpegPath, ffmpegArgs(s.cfg, s.width, s.height, s.pixFmt)...)
	// SIGTERM lets ffmpeg close its input cleanly (an RTSP TEARDOWN);
	// WaitDelay escalates to SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = ffmpegKillGrace
	stderr := newStderrLog(s.log)
	cmd.Stderr = stderr
	// Our own pipe rather than StdoutPipe: Wait would close StdoutPipe
	// as soon as ffmpeg exits, losing the frames still buffered in it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("pipe: %w", err)
	}
	cmd.Stdout = pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return 0, fmt.Errorf("start %s: %w", s.cfg.FFmpegPath, err)
	}
	s.pid.Store(int64(cmd.Process.Pid))
	defer s.pid.Store(0)

	var lastFrame atomic.Int64
	lastFrame.Store(time.Now().UnixNano())
	var stalled atomic.Bool
	readerDone := make(chan struct{})
	var watchdog sync.WaitGroup
	watchdog.Add(1)
	go func() {
		defer watchdog.Done()
		tick := time.NewTicker(max(s.cfg.StallTimeout/4, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-readerDone:
				return
			case <-ctx.Done():
				// Close, or the reader's cancel; unblock a read that a
				// lingering grandchild could otherwise hold open.
				pr.Close()
				return
			case <-tick.C:
				idle := time.Since(time.Unix(0, lastFrame.Load()))
				if idle >= s.cfg.StallTimeout {
					stalled.Store(true)
					s.log.Warn("ffmpeg stalled, killing it", "no_frame_for", idle.Round(time.Millisecond))
					cancel()
					pr.Close()
					return
				}
			}
		}
	}()

	size := s.frameBytes()
	var spare []byte
	var readErr error
	for {
		buf := spare
		spare = nil
		if len(buf) != size {
			buf = make([]byte, size)
		}
		if _, readErr = io.ReadFull(pr, buf); readErr != nil {
			break
		}
		lastFrame.Store(time.Now().UnixNano())
		s.seq++
		f := &frame.Frame{Format: s.format, Width: s.width, Height: s.height, Data: buf, Seq: s.seq, Time: time.Now()}
		if old := s.box.put(f); old != nil {
			spare = old.Data
		}
		frames++
	}
	close(readerDone)
	watchdog.Wait()
	pr.Close()
	waitErr := cmd.Wait()

	switch {
	case s.closing():
		return frames, nil
	case stalled.Load():
		return frames, fmt.Errorf("no frame for %v", s.cfg.StallTimeout)
	case errors.Is(readErr, io.ErrUnexpectedEOF):
		s.box.corrupt()
		s.log.Debug("last frame was cut short", "want_bytes", size)
	}
	if waitErr != nil {
		return frames, fmt.Errorf("ffmpeg: %w%s", waitErr, stderr.lastLine())
	}
	if isNetwork(s.cfg.Source) || s.cfg.Loop {
		return frames, fmt.Errorf("ffmpeg exited although the input should not end%s", stderr.lastLine())
	}
	return frames, nil
}

// probeSize asks ffprobe (next to ffmpeg) for the size of the first video
// stream.
func probeSize(ctx context.Context, cfg Config) (int, int, error) {
	probe := "ffprobe"
	if dir := filepath.Dir(cfg.FFmpegPath); strings.ContainsRune(cfg.FFmpegPath, os.PathSeparator) {
		probe = filepath.Join(dir, "ffprobe")
	}
	ctx, cancel := context.WithTimeout(ctx, max(cfg.StallTimeout, 10*time.Second))
	defer cancel()
	args := []string{"-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"}
	if isRTSP(cfg.Source) {
		args = append(args, "-rtsp_transport", "tcp")
	}
	args = append(args, cfg.Source)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, probe, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("probe size of %s: %w: %s", cfg.Source, err, strings.TrimSpace(stderr.String()))
	}
	w, h, err := parseProbeSize(string(out))
	if err != nil {
		return 0, 0, fmt.Errorf("probe size of %s: %w", cfg.Source, err)
	}
	return w, h, nil
}

// parseProbeSize reads ffprobe's "width,height" line.
func parseProbeSize(out string) (int, int, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	ws, hs, ok := strings.Cut(strings.TrimSpace(line), ",")
	if !ok {
		return 0, 0, fmt.Errorf("no video stream (ffprobe printed %q)", out)
	}
	w, werr := strconv.Atoi(ws)
	h, herr := strconv.Atoi(strings.TrimRight(hs, ","))
	if werr != nil || herr != nil || w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("bad size %q from ffprobe", line)
	}
	return w, h, nil
}

// stderrLog forwards ffmpeg's stderr lines to the log, at most
// stderrLinesPerWindow a window, and remembers the last line for error
// messages.
type stderrLog struct {
	log *slog.Logger

	mu          sync.Mutex
	partial     []byte
	last        string
	windowStart time.Time
	inWindow    int
	suppressed  int
}

func newStderrLog(log *slog.Logger) *stderrLog { return &stderrLog{log: log} }

func (l *stderrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexAny(l.partial, "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		if line != "" {
			l.emit(line)
		}
	}
	// A process printing without newlines must not grow this forever.
	if len(l.partial) > 4096 {
		l.emit(string(l.partial))
		l.partial = l.partial[:0]
	}
	return len(p), nil
}

func (l *stderrLog) emit(line string) {
	l.last = line
	now := time.Now()
	if now.Sub(l.windowStart) >= stderrWindow {
		if l.suppressed > 0 {
			l.log.Warn("ffmpeg output suppressed", "lines", l.suppressed)
		}
		l.windowStart, l.inWindow, l.suppressed = now, 0, 0
	}
	if l.inWindow >= stderrLinesPerWindow {
		l.suppressed++
		return
	}
	l.inWindow++
	l.log.Warn("ffmpeg", "stderr", line)
}

// lastLine returns ": <last stderr line>" or "".
func (l *stderrLog) lastLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == "" {
		return ""
	}
	return ": " + l.last
}

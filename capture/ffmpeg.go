package capture

import (
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
	"time"
	"unicode/utf8"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/quote"
)

// The ffmpeg source runs one ffmpeg process at a time. What it delivers
// depends on Config.Format:
//
//   - rgb24, yuyv (yuyv422) or nv12: ffmpeg decodes the input, scales it to
//     the frame size and writes raw frames to a pipe (-f rawvideo). RGB24
//     costs 3 bytes a pixel on a local pipe (80 MB/s at 1280x720x30, far
//     below what a pipe carries) and spares preprocessing a colour
//     conversion.
//   - mjpeg: the input must be MJPEG already (an IP camera's MJPEG stream,
//     an AVI from a webcam); ffmpeg copies its JPEG images to the pipe
//     without decoding them (-c:v copy -f mjpeg), and clipd decodes only the
//     frames it classifies, with libjpeg-turbo, the decoder CLIP's own
//     preprocessing uses. No scaling is possible, so Width/Height must be
//     unset or the stream's size; the rate is capped to FPS by dropping
//     images.
//   - auto (0): mjpeg when the input is MJPEG at the wanted size, rgb24
//     otherwise. The codec is probed with ffprobe before the first start.
//
// When Config gives no size the stream's own size is probed with ffprobe
// before the first start, which keeps CLIP's preprocessing the only
// resize; decoded streams larger than 720 lines are scaled to a shorter
// side of 720 (aspect ratio kept) to bound the pipe's bandwidth, and any
// longer than MaxSide to MaxSide (a stream may claim any size). Restarts
// keep that size, so a stream that changes resolution is scaled to its
// first one. Rotation metadata is not applied to the probed
// size (a rotated phone video comes out squashed: give Width/Height).

type ffmpegSource struct {
	pipeSource
	cfg Config
	// format and pixFmt are fixed by Config or, for auto, by the probe
	// before the first start; pixFmt is "" for JPEG passthrough.
	format frame.Format
	pixFmt string
	// decided is set once format and size are fixed for good.
	decided bool
	// width and height are fixed by Config or probed before a start.
	width, height int
}

func isRTSP(src string) bool {
	return strings.HasPrefix(src, "rtsp://") || strings.HasPrefix(src, "rtsps://")
}

func isNetwork(src string) bool {
	kind, _ := KindOf(src)
	return kind == KindStream
}

func newFFmpegSource(cfg Config, log *slog.Logger) (*ffmpegSource, error) {
	s := &ffmpegSource{pipeSource: newPipeSource(log.With("kind", "ffmpeg"), cfg), cfg: cfg, width: cfg.Width, height: cfg.Height}
	if cfg.Format != 0 && cfg.Format != frame.MJPEG {
		// Validate admitted only formats ffmpeg delivers.
		s.format, s.pixFmt = cfg.Format, ffmpegPixFmts[cfg.Format]
		s.decided = cfg.Width != 0
	}
	s.start(s.run)
	return s, nil
}

// ffmpegPixFmts names the decoded formats as ffmpeg's -pix_fmt knows them.
var ffmpegPixFmts = map[frame.Format]string{frame.RGB24: "rgb24", frame.YUYV: "yuyv422", frame.NV12: "nv12"}

// streamInfo is what ffprobe says of the first video stream.
type streamInfo struct {
	codec         string
	width, height int
}

// chooseOutput decides what ffmpeg delivers for a stream (see the comment
// at the top of this file) and at what size.
func chooseOutput(want frame.Format, cfgWidth, cfgHeight int, in streamInfo) (format frame.Format, pixFmt string, width, height int, err error) {
	sameSize := cfgWidth == 0 || (cfgWidth == in.width && cfgHeight == in.height)
	// Passed-through images keep the stream's size, which only a decoding
	// run can bound.
	tooLarge := in.width > MaxSide || in.height > MaxSide
	switch {
	case want == frame.MJPEG && in.codec != "mjpeg":
		return 0, "", 0, 0, fmt.Errorf("format mjpeg passes the stream's JPEG images through, but this stream is %s: use auto, rgb24, yuyv or nv12", in.codec)
	case want == frame.MJPEG && !sameSize:
		return 0, "", 0, 0, fmt.Errorf("format mjpeg cannot scale the %dx%d stream to %dx%d without decoding it: leave width/height unset or use auto", in.width, in.height, cfgWidth, cfgHeight)
	case want == frame.MJPEG && tooLarge:
		return 0, "", 0, 0, fmt.Errorf("format mjpeg passes the stream's JPEG images through at their size, but this stream is %dx%d, more than %d on a side: use auto, rgb24, yuyv or nv12, which scale it", in.width, in.height, MaxSide)
	case want == frame.MJPEG || (want == 0 && in.codec == "mjpeg" && sameSize && !tooLarge):
		return frame.MJPEG, "", in.width, in.height, nil
	case want == 0:
		want = frame.RGB24
	}
	width, height = cfgWidth, cfgHeight
	if width == 0 {
		width, height = boundedSize(in.width, in.height)
	}
	return want, ffmpegPixFmts[want], width, height, nil
}

// maxDecodedShortSide bounds the shorter side of frames that ffmpeg decodes
// at the stream's own size. A 4K stream in RGB24 would push 750 MB/s
// through the pipe and the conversion at 30 frames/s, for a picture that
// CLIP shrinks to a few hundred pixels anyway; above this bound ffmpeg
// scales it down, keeping its aspect ratio.
const maxDecodedShortSide = 720

// boundedSize is the size to decode a w×h stream to when none is
// configured: its own, or scaled down, aspect ratio kept, so that the
// shorter side is at most maxDecodedShortSide and the longer at most
// MaxSide: a stream claiming 720×300000 would otherwise cost 648 MB a
// frame buffer. Sizes are even, as chroma-subsampled outputs need (losing
// a pixel is harmless for RGB too), and at least 2. w and h are at most
// maxProbedSide (parseProbe), so the products cannot overflow.
func boundedSize(w, h int) (int, int) {
	short, long := min(w, h), max(w, h)
	num, den := 1, 1 // the scale
	if short > maxDecodedShortSide {
		num, den = maxDecodedShortSide, short
	}
	if long*num > MaxSide*den {
		num, den = MaxSide, long
	}
	w = (w*num + den/2) / den
	h = (h*num + den/2) / den
	return max(w&^1, 2), max(h&^1, 2)
}

// rawReader reads the decoded frames of the current run.
func (s *ffmpegSource) rawReader(r io.Reader) frameReader {
	return rawFrames(s.format, s.width, s.height)(r)
}

// ffmpegArgs builds the command line for one run; pixFmt "" copies JPEG
// images through.
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
	args = append(args, "-i", src, "-an", "-sn", "-dn")
	if pixFmt == "" {
		return append(args, "-c:v", "copy", "-f", "mjpeg", "pipe:1")
	}
	// Dropping frames before scaling spares the scaler (and the pixel
	// conversion it does) every frame that would be dropped: for a 1080p
	// H.264 file at 30 fps asked for 10, ffmpeg's CPU falls from 46 % to
	// 26 % of a core, decoding alone being 16 %.
	filter := fmt.Sprintf("scale=%d:%d", width, height)
	if cfg.FPS > 0 {
		filter = fmt.Sprintf("fps=%d,", cfg.FPS) + filter
	}
	args = append(args, "-vf", filter, "-pix_fmt", pixFmt, "-f", "rawvideo", "pipe:1")
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
	if !s.decided {
		if err := s.decide(); err != nil {
			return 0, err
		}
	}
	s.box.setFormat(s.format, s.width, s.height)

	read := s.rawReader
	if s.pixFmt == "" {
		read = s.jpegReader
	}
	run := s.runPipe(pipeRun{
		what: "ffmpeg", path: s.cfg.FFmpegPath, args: ffmpegArgs(s.cfg, s.width, s.height, s.pixFmt),
		format: s.format, read: read, gate: newRateGate(s.cfg.FPS, s.pixFmt == ""),
	})
	if decided, err := s.endOf(run); decided {
		return run.frames, err
	}
	if isNetwork(s.cfg.Source) || s.cfg.Loop {
		return run.frames, fmt.Errorf("ffmpeg exited although the input should not end%s", run.stderr.lastLine())
	}
	return run.frames, nil
}

// decide probes the stream and fixes what ffmpeg delivers. Where the probe
// fails but decoding at the configured size works for any codec (auto
// with a size), this run decodes and the next one probes again.
func (s *ffmpegSource) decide() error {
	in, err := probeStream(s.ctx, s.cfg)
	if err != nil {
		if s.cfg.Format == 0 && s.cfg.Width != 0 {
			s.log.Warn("cannot probe the stream, so decoding it to rgb24", "err", err)
			s.format, s.pixFmt = frame.RGB24, ffmpegPixFmts[frame.RGB24]
			return nil
		}
		return err
	}
	format, pixFmt, w, h, err := chooseOutput(s.cfg.Format, s.cfg.Width, s.cfg.Height, in)
	if err != nil {
		// Retried with backoff like any failure: the camera's settings
		// may yet change.
		return fmt.Errorf("%s: %w", s.cfg.Source, err)
	}
	s.format, s.pixFmt, s.width, s.height, s.decided = format, pixFmt, w, h, true
	s.log.Info("probed stream", "codec", in.codec, "width", in.width, "height", in.height, "delivering", format)
	return nil
}

// jpegReader reads passed-through JPEG images. A malformed image is
// counted and skipped, as a V4L2 camera's would be; the size of each comes
// from its own header, which is what the decoder will go by.
func (s *ffmpegSource) jpegReader(r io.Reader) frameReader {
	images := newJPEGStream(r)
	return func(buf []byte) ([]byte, int, int, error) {
		for {
			img, err := images.next(buf)
			switch {
			case errors.Is(err, errBadJPEG):
			case err != nil:
				return nil, 0, 0, err
			default:
				w, h, checkErr := checkMJPEG(img)
				if checkErr == nil {
					return img, w, h, nil
				}
				err = checkErr
			}
			s.box.corrupt()
			s.log.Debug("dropping corrupt image", "err", err)
		}
	}
}

// rateGate caps passed-through images to fps (decoded output is capped by
// ffmpeg's fps filter instead). It admits an image whenever fewer than
// elapsed×fps have been admitted, so the rate holds on average whatever
// the input's own rate.
type rateGate struct {
	fps      float64
	start    time.Time
	admitted float64
}

func newRateGate(fps int, enabled bool) *rateGate {
	if !enabled || fps <= 0 {
		return &rateGate{}
	}
	return &rateGate{fps: float64(fps)}
}

func (g *rateGate) admit(now time.Time) bool {
	if g.fps == 0 {
		return true
	}
	if g.start.IsZero() {
		g.start = now
	}
	if g.admitted >= now.Sub(g.start).Seconds()*g.fps+1 {
		return false
	}
	g.admitted++
	return true
}

// Bounds on what ffprobe says, which a stream (a camera's firmware, a
// crafted file, a server) can make as long as it likes: its answer is
// three short lines.
const (
	// probeOutputBytes is what is kept of its stdout (the start, where
	// the answer is) and of its stderr (the end, where the reason it
	// failed is); the rest is read and discarded.
	probeOutputBytes = 64 << 10
	// probeQuoteBytes is the most of its output an error quotes: errors
	// become the camera's last error, in status and in a message to
	// every client.
	probeQuoteBytes = 300
	// maxProbedSide is the largest width or height believed (far above
	// any codec's); boundedSize scales what is above MaxSide.
	maxProbedSide = 1 << 20
	// maxCodecName bounds the codec name, which logs and errors repeat.
	maxCodecName = 32
)

// cappedBuffer keeps the first limit bytes written to it and discards the
// rest, so that a process writing to it never blocks on a full pipe.
type cappedBuffer struct {
	buf   []byte
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// tailBuffer keeps the last limit bytes written to it: where a process's
// stderr says why it failed.
type tailBuffer struct {
	buf   []byte
	limit int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.limit {
		p = p[len(p)-b.limit:]
	}
	if over := len(b.buf) + len(p) - b.limit; over > 0 {
		b.buf = b.buf[:copy(b.buf, b.buf[over:])]
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// quote cuts s to about n bytes for an error, keeping its start and its
// end (where ffprobe puts the reason, after the URL) and saying how much
// there was.
func elide(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n/2
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return fmt.Sprintf("%s…(%d bytes)…%s", quote.Truncate(s, n/2), len(s), s[i:])
}

// finalLine is the last line of s that is not blank.
func finalLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexAny(s, "\r\n"); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// probeStream asks ffprobe (next to ffmpeg) for the codec and size of the
// first video stream.
func probeStream(ctx context.Context, cfg Config) (streamInfo, error) {
	probe := "ffprobe"
	if dir := filepath.Dir(cfg.FFmpegPath); strings.ContainsRune(cfg.FFmpegPath, os.PathSeparator) {
		probe = filepath.Join(dir, "ffprobe")
	}
	ctx, cancel := context.WithTimeout(ctx, max(cfg.StallTimeout, 10*time.Second))
	defer cancel()
	args := []string{"-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height", "-of", "default=noprint_wrappers=1"}
	if isRTSP(cfg.Source) {
		args = append(args, "-rtsp_transport", "tcp")
	}
	args = append(args, cfg.Source)
	stdout := &cappedBuffer{limit: probeOutputBytes}
	stderr := &tailBuffer{limit: probeOutputBytes}
	cmd := exec.CommandContext(ctx, probe, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		// ffprobe's last line names the problem ("Connection refused");
		// the lines before it are context of the same.
		return streamInfo{}, fmt.Errorf("probe %s: %w: %s", cfg.Source, err, elide(finalLine(string(stderr.buf)), probeQuoteBytes))
	}
	in, err := parseProbe(string(stdout.buf))
	if err != nil {
		return streamInfo{}, fmt.Errorf("probe %s: %w", cfg.Source, err)
	}
	return in, nil
}

// parseProbe reads ffprobe's key=value lines; only the first value of each
// key counts.
func parseProbe(out string) (streamInfo, error) {
	fields := map[string]string{}
	for line := range strings.Lines(out) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if _, seen := fields[key]; ok && !seen {
			fields[key] = value
		}
	}
	if len(fields) == 0 {
		return streamInfo{}, fmt.Errorf("no video stream (ffprobe printed %q)", elide(out, probeQuoteBytes))
	}
	w, werr := strconv.Atoi(fields["width"])
	h, herr := strconv.Atoi(fields["height"])
	if werr != nil || herr != nil || w <= 0 || h <= 0 || w > maxProbedSide || h > maxProbedSide {
		return streamInfo{}, fmt.Errorf("bad size %sx%s from ffprobe", elide(fields["width"], 20), elide(fields["height"], 20))
	}
	return streamInfo{codec: quote.Truncate(fields["codec_name"], maxCodecName), width: w, height: h}, nil
}

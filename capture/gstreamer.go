package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode"

	"github.com/clipd/clipd/frame"
)

// GStreamerPrefix starts a source that is a GStreamer pipeline, as
// gst-launch-1.0 takes it: "gst:nvarguscamerasrc ! video/x-raw(memory:NVMM),
// width=1280,height=720 ! nvvidconv". It is how a Jetson's CSI cameras are
// read (V4L2 gives their raw Bayer data, which needs the ISP behind
// nvarguscamerasrc), and it opens anything else GStreamer can.
//
// The source runs gst-launch-1.0 with the pipeline followed by
//
//	! videorate drop-only=true max-rate=FPS ! videoconvert ! videoscale
//	! video/x-raw,format=F,width=W,height=H ! fdsink fd=1 sync=false
//
// and reads raw frames from its standard output, like the ffmpeg source.
// The pipeline must end in system memory (on a Jetson: nvvidconv, not an
// NVMM caps filter); videoconvert and videoscale pass frames through
// untouched when the pipeline already delivers format F at W×H, so ending
// it with nvvidconv ! video/x-raw,format=NV12,width=W,height=H keeps the
// conversion in the Jetson's hardware. F is NV12 by default (rgb24 gives
// RGB, yuyv YUY2). Width and Height must be known (there is no probe).
const GStreamerPrefix = "gst:"

var gstFormats = map[frame.Format]string{frame.NV12: "NV12", frame.RGB24: "RGB", frame.YUYV: "YUY2"}

type gstSource struct {
	pipeSource
	cfg    Config
	format frame.Format
	args   []string
}

func newGStreamerSource(cfg Config, log *slog.Logger) (*gstSource, error) {
	format := cfg.Format
	if format == 0 {
		format = frame.NV12
	}
	// Format, size and pipeline syntax were checked by Validate.
	caps := gstFormats[format]
	elements, _ := SplitPipeline(strings.TrimPrefix(cfg.Source, GStreamerPrefix))
	s := &gstSource{
		pipeSource: newPipeSource(log.With("kind", "gstreamer"), cfg),
		cfg:        cfg, format: format,
		args: gstArgs(elements, caps, cfg.Width, cfg.Height, cfg.FPS),
	}
	s.start(s.run)
	return s, nil
}

// gstArgs is gst-launch-1.0's command line: the user's elements, then the
// tail that fixes rate, format and size and writes to standard output.
func gstArgs(elements []string, caps string, width, height, fps int) []string {
	args := append([]string{"-q"}, elements...)
	if fps > 0 {
		// Before conversion, so that dropped frames cost nothing.
		args = append(args, "!", "videorate", "drop-only=true", "max-rate="+strconv.Itoa(fps))
	}
	return append(args, "!", "videoconvert", "!", "videoscale", "!",
		fmt.Sprintf("video/x-raw,format=%s,width=%d,height=%d", caps, width, height),
		"!", "fdsink", "fd=1", "sync=false")
}

func (s *gstSource) run() {
	s.box.setFormat(s.format, s.cfg.Width, s.cfg.Height)
	// A camera pipeline has no end: a clean exit (end of stream) is a
	// failure to restart from, like an error.
	s.superviseSessions(s.cfg, s.log, "gstreamer", s.runOnce, func(int) bool { return false })
}

func (s *gstSource) runOnce() (int, error) {
	run := s.runPipe(pipeRun{
		what: "gst-launch-1.0", path: s.cfg.GStreamerPath, args: s.args, format: s.format,
		read: rawFrames(s.format, s.cfg.Width, s.cfg.Height), gate: newRateGate(0, false),
	})
	if decided, err := s.endOf(run); decided {
		return run.frames, err
	}
	return run.frames, fmt.Errorf("the pipeline reached its end%s", run.stderr.lastLine())
}

// SplitPipeline splits a gst-launch pipeline description into the
// arguments gst-launch-1.0 takes: words separated by white space, where
// '…' and "…" group words (and are removed) as a shell would.
func SplitPipeline(pipeline string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	for _, r := range pipeline {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("GStreamer pipeline: unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, word.String())
	}
	if len(words) == 0 {
		return nil, errors.New("GStreamer pipeline: empty (write it after \"gst:\")")
	}
	return words, nil
}

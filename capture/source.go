package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/suggest"
)

// This file is the one place that says what a camera source is: which
// strings name which kind, and which settings each kind takes. The config
// package, `clipd check` and Open all ask it, so that what check accepts
// is what run can start.

// Kind is what a Config.Source names; it decides the implementation.
type Kind int

const (
	// KindV4L2 is a /dev/... video device.
	KindV4L2 Kind = iota + 1
	// KindStream is a network URL read by ffmpeg (rtsp://, http://, ...).
	KindStream
	// KindFile is a video file read by ffmpeg.
	KindFile
	// KindPattern is the synthetic camera.
	KindPattern
	// KindGStreamer is "gst:" and a pipeline run by gst-launch-1.0.
	KindGStreamer
)

func (k Kind) String() string {
	switch k {
	case KindV4L2:
		return "v4l2"
	case KindStream:
		return "stream"
	case KindFile:
		return "file"
	case KindPattern:
		return "pattern"
	case KindGStreamer:
		return "gstreamer"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Helper reports whether frames come from a helper process (ffmpeg or
// gst-launch), which converts and pipes every frame it outputs, so that
// asking it for fewer frames saves work.
func (k Kind) Helper() bool { return k == KindStream || k == KindFile || k == KindGStreamer }

// PatternSource names the synthetic camera; options follow as a query
// ("pattern?hold=15&seed=7&shapes=1").
const PatternSource = "pattern"

// streamSchemes are the URL schemes ffmpeg is asked to read.
var streamSchemes = []string{"rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "srt", "udp", "tcp"}

// KindOf classifies a source string, or says why it names no source.
func KindOf(source string) (Kind, error) {
	switch {
	case source == "":
		return 0, errors.New("must not be empty")
	case source == PatternSource || strings.HasPrefix(source, PatternSource+"?"):
		return KindPattern, nil
	case strings.HasPrefix(source, "/dev/"):
		return KindV4L2, nil
	case strings.HasPrefix(source, GStreamerPrefix):
		return KindGStreamer, nil
	case isPatternTypo(source):
		return 0, fmt.Errorf("%q: did you mean the synthetic camera, \"pattern\" (or \"pattern?hold=K&seed=S&shapes=N\")? A video file's name needs an extension or a directory", source)
	}
	if scheme, _, found := strings.Cut(source, "://"); found {
		for _, s := range streamSchemes {
			if strings.EqualFold(scheme, s) {
				return KindStream, nil
			}
		}
		return 0, fmt.Errorf("unsupported URL scheme %q (want one of %s)", scheme, strings.Join(streamSchemes, ", "))
	}
	return KindFile, nil
}

// isPatternTypo catches "patern", "Pattern", "pattern&hold=5": a bare
// word near "pattern", without the directory or extension a video file's
// name has.
func isPatternTypo(source string) bool {
	if strings.ContainsAny(source, "/.") || strings.Contains(source, "://") {
		return false
	}
	word, _, _ := strings.Cut(source, "?")
	word, _, _ = strings.Cut(word, "&")
	_, near := suggest.Closest(strings.ToLower(word), []string{PatternSource})
	return near
}

// DefaultSize is the frame size asked of a kind when the config gives
// none. Streams and files keep their own (0x0): scaling them to a fixed
// 16:9 size would distort other shapes before CLIP's own resize.
func (k Kind) DefaultSize() (width, height int) {
	switch k {
	case KindStream, KindFile:
		return 0, 0
	}
	return 1280, 720
}

// formats lists the pixel formats each kind can deliver (0 = auto is
// always accepted).
var formats = map[Kind][]frame.Format{
	KindV4L2:      {frame.MJPEG, frame.YUYV, frame.NV12},
	KindStream:    {frame.RGB24, frame.YUYV, frame.NV12, frame.MJPEG},
	KindFile:      {frame.RGB24, frame.YUYV, frame.NV12, frame.MJPEG},
	KindPattern:   {frame.RGB24},
	KindGStreamer: {frame.NV12, frame.YUYV, frame.RGB24},
}

// Limits that keep a typo from allocating gigabytes or ticking in
// nanoseconds.
const (
	MaxSide = 8192
	MaxFPS  = 240
)

// Problem is one setting a source cannot take, named by its config key
// ("source", "format", "width", "height", "fps", "loop").
type Problem struct {
	Key string
	Msg string
}

func (p Problem) Error() string { return p.Key + ": " + p.Msg }

// Validate checks cfg against the rules of its kind without touching the
// filesystem or starting anything. Open applies the same rules; config
// validation and `clipd check` call it directly.
func Validate(cfg Config) []Problem {
	var probs []Problem
	add := func(key, format string, args ...any) {
		probs = append(probs, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	kind, err := KindOf(cfg.Source)
	if err != nil {
		add("source", "%v", err)
		return probs
	}
	switch kind {
	case KindGStreamer:
		if _, err := SplitPipeline(strings.TrimPrefix(cfg.Source, GStreamerPrefix)); err != nil {
			add("source", "%v", err)
		}
	case KindPattern:
		if err := cfg.applyPatternQuery(); err != nil {
			add("source", "%v", err)
		}
	}
	if cfg.Format != 0 {
		if _, err := frame.ParseFormat(cfg.Format.String()); err != nil {
			add("format", "%v", err)
		} else if !contains(formats[kind], cfg.Format) {
			add("format", "%s sources deliver %s, not %v", kind, formatList(formats[kind]), cfg.Format)
		}
	}
	switch {
	case cfg.Width < 0 || cfg.Height < 0:
		add("width", "negative size %dx%d", cfg.Width, cfg.Height)
	case (cfg.Width == 0) != (cfg.Height == 0):
		add("width", "give width and height together (got %dx%d)", cfg.Width, cfg.Height)
	case cfg.Width > MaxSide || cfg.Height > MaxSide:
		add("width", "%dx%d exceeds %dx%d", cfg.Width, cfg.Height, MaxSide, MaxSide)
	case cfg.Width%2 != 0:
		// YUYV and NV12 subsample chroma by two; odd sizes have no exact
		// layout in them, and drivers and scalers round them anyway.
		add("width", "must be even, got %d", cfg.Width)
	case cfg.Height%2 != 0:
		add("height", "must be even, got %d", cfg.Height)
	case kind == KindGStreamer && cfg.Width == 0:
		add("width", "a GStreamer source needs width and height (its output caps)")
	}
	if cfg.FPS < 0 || cfg.FPS > MaxFPS {
		add("fps", "must be between 1 and %d, got %d", MaxFPS, cfg.FPS)
	}
	if cfg.Loop && kind != KindFile {
		add("loop", "only applies to file sources, not %s", kind)
	}
	return probs
}

// Preflight checks what Open would refuse beyond Validate, with the
// filesystem as it is now: the helper program on PATH, a file source that
// exists. A missing device is not an error (USB cameras come and go, and
// the source waits for them); Preflight reports it in missing, for a
// warning.
func Preflight(cfg Config) (missing string, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return "", err
	}
	if kind, _ := KindOf(cfg.Source); kind == KindV4L2 {
		if _, err := os.Stat(cfg.Source); err != nil {
			return fmt.Sprintf("device %s does not exist now; clipd waits for it", cfg.Source), nil
		}
	}
	return "", preflight(cfg)
}

func preflight(cfg Config) error {
	kind, _ := KindOf(cfg.Source)
	switch kind {
	case KindStream, KindFile:
		if _, err := exec.LookPath(cfg.FFmpegPath); err != nil {
			return Problem{Key: "source", Msg: fmt.Sprintf("ffmpeg is needed for this source: %v (Debian: apt-get install ffmpeg)", err)}
		}
		if kind == KindFile {
			if _, err := os.Stat(cfg.Source); err != nil {
				return Problem{Key: "source", Msg: fmt.Sprintf("video file %s: %v", cfg.Source, unwrapPathError(err))}
			}
		}
	case KindGStreamer:
		if _, err := exec.LookPath(cfg.GStreamerPath); err != nil {
			return Problem{Key: "source", Msg: fmt.Sprintf("%s: %v (Debian: apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base)", cfg.GStreamerPath, err)}
		}
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func contains(list []frame.Format, f frame.Format) bool {
	for _, x := range list {
		if x == f {
			return true
		}
	}
	return false
}

func formatList(list []frame.Format) string {
	names := make([]string, len(list))
	for i, f := range list {
		names[i] = f.String()
	}
	if len(names) == 1 {
		return names[0] + " only"
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

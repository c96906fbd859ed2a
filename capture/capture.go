// Package capture turns cameras, network streams, video files and the
// synthetic test camera into a stream of frame.Frame values.
//
// Every source runs one private goroutine that owns the device or
// subprocess and hands frames to the consumer through a one-slot "latest
// frame" mailbox: Next always returns the newest frame not yet returned, a
// frame that is replaced before anyone took it is counted as dropped, and
// a slow consumer never slows capture down.
//
// Sources are picked by Config.Source:
//   - "/dev/..." paths: V4L2 through github.com/blackjack/webcam. Prefer the
//     stable /dev/v4l/by-id/usb-... links over /dev/videoN, whose numbers
//     change across reboots and re-plugs (a reopened device keeps its by-id
//     name).
//   - rtsp://, rtsps://, http://, https:// URLs and any other path: an
//     ffmpeg subprocess writing raw frames (or an MJPEG stream's own JPEG
//     images) to a pipe.
//   - "gst:" and a GStreamer pipeline: a gst-launch-1.0 subprocess writing
//     raw frames to a pipe (a Jetson's CSI cameras, via nvarguscamerasrc).
//   - "pattern" or "pattern?hold=15&seed=7&shapes=1": the synthetic camera (package
//     synth), whose frames carry their ground truth in Frame.Meta.
//
// What has been verified where: the V4L2 capture loop (negotiation,
// timeouts, EAGAIN, device loss and reopen, corrupt MJPEG) is tested
// against scripted fake devices only; the thin adapter over
// *webcam.Webcam has NOT yet been run against a real camera. The ffmpeg,
// GStreamer and pattern sources are tested with the real ffmpeg and
// gst-launch-1.0 binaries (videotestsrc; nvarguscamerasrc on a Jetson has
// NOT been run) and the real synth package.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/sched"
	"github.com/clipd/clipd/synth"
)

// Source produces frames.
type Source interface {
	// Next blocks until a frame newer than the last one returned is
	// available and returns it; frames that were overtaken while nobody
	// called Next are dropped and counted in Stats.Dropped. It returns
	// ctx.Err() when ctx ends, ErrClosed after Close, and io.EOF once a
	// non-looping file has been played to its end and its last frame has
	// been taken.
	Next(ctx context.Context) (*frame.Frame, error)
	// Stats reports counters since Open.
	Stats() Stats
	// Close stops capture and waits for the source's goroutines (and
	// subprocesses) to finish.
	Close() error
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("capture: source closed")

// Stats are a source's counters since Open.
type Stats struct {
	// Captured counts good frames handed to the mailbox.
	Captured uint64
	// Dropped counts captured frames that were replaced by a newer one
	// before the consumer took them.
	Dropped uint64
	// Corrupt counts frames discarded because their data was unusable
	// (short buffers, MJPEG without a valid header or scan).
	Corrupt uint64
	// Restarts counts reopenings of the device or subprocess after a
	// failure, a stall or an exit.
	Restarts uint64
	// LastError is the most recent capture error ("" if none) and
	// LastErrorTime when it happened.
	LastError     string
	LastErrorTime time.Time
	// Format, Width and Height describe the frames currently produced
	// (for V4L2, what the driver actually chose).
	Format frame.Format
	Width  int
	Height int
}

// Config describes one source.
type Config struct {
	// Name labels the source in errors (the camera's name); logs name
	// the source itself.
	Name string
	// Source is a device path, URL, file path, "gst:" and a GStreamer
	// pipeline, or "pattern[?hold=K&seed=S]".
	Source string
	// Format is the wanted pixel format; 0 picks one (see each source).
	Format frame.Format
	// Width and Height are the wanted frame size. V4L2 asks the driver for
	// it (640x480 when zero) and reports what the driver chose; ffmpeg
	// scales to it (keeps the stream's size when zero); pattern renders at
	// it (640x480 when zero).
	Width, Height int
	// FPS is the wanted frame rate; 0 means the device's or stream's own
	// rate (pattern: 10).
	FPS int

	// Loop replays a file forever (ffmpeg -stream_loop -1).
	Loop bool
	// Unthrottled reads files as fast as ffmpeg decodes them instead of at
	// their native rate (no -re); for benchmarks and batch runs.
	Unthrottled bool
	// FFmpegPath is the ffmpeg binary ("ffmpeg" from PATH when empty);
	// ffprobe is looked up next to it.
	FFmpegPath string
	// GStreamerPath is the gst-launch binary ("gst-launch-1.0" from PATH
	// when empty).
	GStreamerPath string

	// Priority is the CPU priority of helper processes (ffmpeg,
	// gst-launch), which they inherit from the thread that starts them. A
	// helper that stalls at Idle is restarted at Normal, and stays there.
	Priority sched.Priority

	// StallTimeout is how long a running source may go without a frame
	// before it is closed and reopened (default 5s).
	StallTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff between
	// reopen attempts (defaults 250ms and 10s).
	RetryMin, RetryMax time.Duration

	// Seed is the pattern source's base seed; frame seq n shows scene
	// Seed + (n-1)/Hold.
	Seed uint64
	// Hold is how many consecutive pattern frames show the same scene
	// (default 1: a new scene every frame).
	Hold int
	// Pattern restricts what the synthetic scenes contain; its Width and
	// Height are ignored in favour of Config's.
	Pattern synth.Options
}

// withDefaults validates cfg (Validate) and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.Source
	}
	if probs := Validate(cfg); len(probs) > 0 {
		errs := make([]error, len(probs))
		for i, p := range probs {
			errs[i] = fmt.Errorf("capture %s: %w", cfg.Name, p)
		}
		return cfg, errors.Join(errs...)
	}
	if cfg.StallTimeout < 0 || cfg.RetryMin < 0 || cfg.RetryMax < 0 {
		return cfg, fmt.Errorf("capture %s: stall_timeout/retry: negative duration", cfg.Name)
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 5 * time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 250 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 10 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		return cfg, fmt.Errorf("capture %s: retry_max %v is below retry_min %v", cfg.Name, cfg.RetryMax, cfg.RetryMin)
	}
	if cfg.Hold < 0 {
		return cfg, fmt.Errorf("capture %s: hold: negative (%d)", cfg.Name, cfg.Hold)
	}
	if cfg.FFmpegPath == "" {
		cfg.FFmpegPath = "ffmpeg"
	}
	if cfg.GStreamerPath == "" {
		cfg.GStreamerPath = "gst-launch-1.0"
	}
	return cfg, nil
}

// applyPatternQuery reads "pattern?hold=K&seed=S&shapes=N" (N: at most N
// shapes per scene); query values override the Config fields.
func (cfg *Config) applyPatternQuery() error {
	_, query, found := strings.Cut(cfg.Source, "?")
	if !found {
		return nil
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("capture %s: source %q: %w", cfg.Name, cfg.Source, err)
	}
	for key, vals := range values {
		v := vals[len(vals)-1]
		switch key {
		case "hold":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("capture %s: source %q: hold=%q is not a positive integer", cfg.Name, cfg.Source, v)
			}
			cfg.Hold = n
		case "seed":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("capture %s: source %q: seed=%q is not an unsigned integer", cfg.Name, cfg.Source, v)
			}
			cfg.Seed = n
		case "shapes":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("capture %s: source %q: shapes=%q is not a positive integer", cfg.Name, cfg.Source, v)
			}
			cfg.Pattern.MinShapes, cfg.Pattern.MaxShapes = min(cfg.Pattern.MinShapes, n), n
		default:
			return fmt.Errorf("capture %s: source %q: unknown parameter %q (want hold, seed, shapes)", cfg.Name, cfg.Source, key)
		}
	}
	return nil
}

// Open validates cfg and starts the source it names. The returned source
// is already capturing; failures after Open (device gone, stream down) are
// retried in the background and show up in Stats and the log.
func Open(cfg Config, log *slog.Logger) (Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := preflight(cfg); err != nil {
		return nil, fmt.Errorf("capture %s: %w", cfg.Name, err)
	}
	if log == nil {
		log = slog.Default()
	}
	// The caller's logger names the camera; what its lines add is which
	// source they are about (a reload may swap it under the same name),
	// never its password, wherever a line quotes it.
	log = redactLog(log, cfg.Source).With("source", cfg.Source)
	kind, _ := KindOf(cfg.Source) // checked by withDefaults
	switch kind {
	case KindPattern:
		if err := cfg.applyPatternQuery(); err != nil {
			return nil, err
		}
		return newPatternSource(cfg, log)
	case KindV4L2:
		return newV4L2Source(cfg, log, openWebcam)
	case KindGStreamer:
		return newGStreamerSource(cfg, log)
	default:
		return newFFmpegSource(cfg, log)
	}
}

// backoff is capped exponential delay between reopen attempts.
type backoff struct {
	min, max, next time.Duration
}

func newBackoff(min, max time.Duration) backoff { return backoff{min: min, max: max, next: min} }

// delay returns the pause before the next attempt and doubles the one after.
func (b *backoff) delay() time.Duration {
	d := b.next
	b.next = min(b.next*2, b.max)
	return d
}

func (b *backoff) reset() { b.next = b.min }

// sleepOrDone waits d, returning false early if done closes.
func sleepOrDone(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

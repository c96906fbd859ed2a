package capture

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"

	"github.com/clipd/clipd/frame"
)

// V4L2 fourcc codes of the formats clipd can use.
const (
	fourccYUYV  = 'Y' | 'U'<<8 | 'Y'<<16 | 'V'<<24
	fourccNV12  = 'N' | 'V'<<8 | '1'<<16 | '2'<<24
	fourccMJPEG = 'M' | 'J'<<8 | 'P'<<16 | 'G'<<24
	// Some UVC cameras announce their motion JPEG as "JPEG".
	fourccJPEG  = 'J' | 'P'<<8 | 'E'<<16 | 'G'<<24
	fourccRGB24 = 'R' | 'G'<<8 | 'B'<<16 | '3'<<24
)

func fourccString(code uint32) string {
	return string([]byte{byte(code), byte(code >> 8), byte(code >> 16), byte(code >> 24)})
}

func formatOfFourcc(code uint32) (frame.Format, bool) {
	switch code {
	case fourccYUYV:
		return frame.YUYV, true
	case fourccNV12:
		return frame.NV12, true
	case fourccMJPEG, fourccJPEG:
		return frame.MJPEG, true
	case fourccRGB24:
		return frame.RGB24, true
	}
	return 0, false
}

func fourccsOf(f frame.Format) []uint32 {
	switch f {
	case frame.YUYV:
		return []uint32{fourccYUYV}
	case frame.NV12:
		return []uint32{fourccNV12}
	case frame.MJPEG:
		return []uint32{fourccMJPEG, fourccJPEG}
	case frame.RGB24:
		return []uint32{fourccRGB24}
	}
	return nil
}

// driverFormat is what VIDIOC_G_FMT reports after negotiation.
type driverFormat struct {
	FourCC        uint32
	Width, Height uint32
	// BytesPerLine is the stride of the first plane (0 for compressed).
	BytesPerLine uint32
	SizeImage    uint32
}

// device is exactly the part of a V4L2 camera the capture loop uses, so
// the loop can be driven by scripted fakes in tests. webcamDevice is the
// real one.
type device interface {
	// SupportedFormats maps offered fourcc codes to their descriptions.
	SupportedFormats() map[webcam.PixelFormat]string
	SetImageFormat(fourcc uint32, width, height uint32) error
	// ActualFormat reads back what the driver chose (VIDIOC_G_FMT).
	ActualFormat() (driverFormat, error)
	SetFramerate(fps float32) error
	StartStreaming() error
	// WaitForFrame returns nil when a buffer is ready, *webcam.Timeout
	// when none came within timeout, or the poll error.
	WaitForFrame(timeout time.Duration) error
	// GetFrame dequeues a filled buffer; the bytes stay valid only until
	// ReleaseFrame(index).
	GetFrame() (data []byte, index uint32, err error)
	ReleaseFrame(index uint32) error
	Close() error
}

type deviceOpener func(path string) (device, error)

const (
	// waitStep is one WaitForFrame; webcam v0.6.1 counts its timeout in
	// whole seconds, so this also bounds how long Close may take.
	waitStep = time.Second
	// maxSpuriousWakeups bounds back-to-back EAGAINs (poll said ready,
	// DQBUF had nothing), which would otherwise spin.
	maxSpuriousWakeups = 100
	// defaultV4L2Width/Height is asked for when Config gives no size.
	defaultV4L2Width, defaultV4L2Height = 640, 480
	// usb2RawLimit is the largest size (in pixels) whose raw YUYV fits a
	// USB 2 link at camera frame rates; above it auto picks MJPEG.
	usb2RawLimit = 640 * 480
)

type v4l2Source struct {
	runner
	cfg  Config
	log  *slog.Logger
	open deviceOpener
	seq  uint64
}

func newV4L2Source(cfg Config, log *slog.Logger, open deviceOpener) (*v4l2Source, error) {
	s := &v4l2Source{runner: newRunner(), cfg: cfg, log: log.With("kind", "v4l2"), open: open}
	s.start(s.run)
	return s, nil
}

func (s *v4l2Source) run() {
	s.superviseSessions(s.cfg, s.log, "camera", s.session, func(int) bool { return false })
}

// negotiated is the format a session streams in.
type negotiated struct {
	format        frame.Format
	width, height int
	stride        int
	minBytes      int
}

// session opens the device, streams until an error or Close, and returns
// how many good frames it delivered.
func (s *v4l2Source) session() (frames int, err error) {
	dev, err := s.open(s.cfg.Source)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", s.cfg.Source, err)
	}
	defer func() {
		if cerr := dev.Close(); cerr != nil {
			s.log.Debug("closing camera", "err", cerr)
		}
	}()
	neg, err := negotiate(dev, s.cfg)
	if err != nil {
		return 0, err
	}
	if s.cfg.FPS > 0 {
		if err := dev.SetFramerate(float32(s.cfg.FPS)); err != nil {
			s.log.Warn("camera does not take the frame rate; using its own", "fps", s.cfg.FPS, "err", err)
		}
	}
	if err := dev.StartStreaming(); err != nil {
		return 0, fmt.Errorf("start streaming: %w", err)
	}
	s.box.setFormat(neg.format, neg.width, neg.height)
	s.log.Info("camera streaming", "format", neg.format, "width", neg.width, "height", neg.height)

	maxTimeouts := max(1, int((s.cfg.StallTimeout+waitStep-1)/waitStep))
	timeouts, spurious := 0, 0
	for !s.closing() {
		if err := dev.WaitForFrame(waitStep); err != nil {
			var timeout *webcam.Timeout
			switch {
			case errors.As(err, &timeout):
				timeouts++
				if timeouts >= maxTimeouts {
					return frames, fmt.Errorf("no frame for %d waits of %v", timeouts, waitStep)
				}
				continue
			case errors.Is(err, unix.EINTR):
				continue
			}
			return frames, fmt.Errorf("wait for frame: %w", err)
		}
		buf, index, err := dev.GetFrame()
		if errors.Is(err, unix.EAGAIN) {
			spurious++
			if spurious >= maxSpuriousWakeups {
				return frames, fmt.Errorf("%d wakeups in a row without a frame", spurious)
			}
			continue
		}
		if err != nil {
			return frames, fmt.Errorf("dequeue frame: %w", err)
		}
		captured := time.Now()
		// The driver reuses the buffer once released, so copy first.
		data := bytes.Clone(buf)
		if err := dev.ReleaseFrame(index); err != nil {
			return frames, fmt.Errorf("requeue buffer %d: %w", index, err)
		}
		timeouts, spurious = 0, 0
		f, err := neg.frameOf(data)
		if err != nil {
			s.box.corrupt()
			s.log.Debug("dropping corrupt frame", "err", err)
			continue
		}
		s.seq++
		f.Seq, f.Time = s.seq, captured
		s.box.put(f)
		frames++
	}
	return frames, nil
}

// frameOf checks data against the negotiated format and wraps it.
func (n negotiated) frameOf(data []byte) (*frame.Frame, error) {
	f := &frame.Frame{Format: n.format, Width: n.width, Height: n.height, Data: data}
	if n.format == frame.MJPEG {
		w, h, err := checkMJPEG(data)
		if err != nil {
			return nil, err
		}
		// The JPEG header is what the decoder will go by.
		f.Width, f.Height = w, h
		return f, nil
	}
	if len(data) < n.minBytes {
		return nil, fmt.Errorf("short %v frame: %d bytes, want %d", n.format, len(data), n.minBytes)
	}
	f.Stride = n.stride
	return f, nil
}

// candidateFourccs lists the formats to try in order. NV12 comes first
// wherever the device offers it: devices that do are usually ISP or CSI
// pipelines where it is the native, cheapest layout. Then, as USB 2 cannot
// carry raw video above VGA at full rate, MJPEG for larger sizes and YUYV
// for smaller ones.
func candidateFourccs(want frame.Format, width, height int) []uint32 {
	if want != 0 {
		return fourccsOf(want)
	}
	if width*height > usb2RawLimit {
		return []uint32{fourccNV12, fourccMJPEG, fourccJPEG, fourccYUYV}
	}
	return []uint32{fourccNV12, fourccYUYV, fourccMJPEG, fourccJPEG}
}

// negotiate sets the first candidate format the device offers and reads
// back what the driver actually chose, which may differ in size (drivers
// round to their nearest mode) and even in format.
func negotiate(dev device, cfg Config) (negotiated, error) {
	width, height := cfg.Width, cfg.Height
	if width == 0 {
		width, height = defaultV4L2Width, defaultV4L2Height
	}
	offered := dev.SupportedFormats()
	var tried []string
	for _, code := range candidateFourccs(cfg.Format, width, height) {
		if _, ok := offered[webcam.PixelFormat(code)]; !ok {
			continue
		}
		if err := dev.SetImageFormat(code, uint32(width), uint32(height)); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", fourccString(code), err))
			continue
		}
		got, err := dev.ActualFormat()
		if err != nil {
			return negotiated{}, fmt.Errorf("read back format: %w", err)
		}
		format, ok := formatOfFourcc(got.FourCC)
		if !ok || (cfg.Format != 0 && format != cfg.Format) {
			tried = append(tried, fmt.Sprintf("%s: driver chose %s instead", fourccString(code), fourccString(got.FourCC)))
			continue
		}
		if got.Width == 0 || got.Height == 0 {
			return negotiated{}, fmt.Errorf("driver reports an empty size %dx%d for %s", got.Width, got.Height, fourccString(got.FourCC))
		}
		return negotiatedOf(format, got), nil
	}
	var names []string
	for code, desc := range offered {
		names = append(names, fmt.Sprintf("%s (%s)", fourccString(uint32(code)), desc))
	}
	slices.Sort(names)
	want := "auto"
	if cfg.Format != 0 {
		want = cfg.Format.String()
	}
	msg := fmt.Sprintf("format %s at %dx%d: no usable format; device offers [%s]", want, width, height, strings.Join(names, ", "))
	if len(tried) > 0 {
		msg += "; tried " + strings.Join(tried, "; ")
	}
	return negotiated{}, errors.New(msg)
}

func negotiatedOf(format frame.Format, got driverFormat) negotiated {
	n := negotiated{format: format, width: int(got.Width), height: int(got.Height)}
	var natural, rows int
	switch format {
	case frame.YUYV:
		natural, rows = n.width*2, n.height
	case frame.RGB24:
		natural, rows = n.width*3, n.height
	case frame.NV12:
		natural, rows = n.width, n.height+n.height/2
	default:
		return n
	}
	n.stride = max(natural, int(got.BytesPerLine))
	n.minBytes = n.stride * rows
	if n.stride == natural {
		n.stride = 0 // tightly packed
	}
	return n
}

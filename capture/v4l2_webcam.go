//go:build linux

package capture

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"
)

// webcamDevice is the real device: *webcam.Webcam plus the one query the
// library lacks. Not yet exercised against a real camera.
type webcamDevice struct {
	*webcam.Webcam
	path string
}

func openWebcam(path string) (device, error) {
	cam, err := webcam.Open(path)
	if err != nil {
		return nil, err
	}
	return &webcamDevice{Webcam: cam, path: path}, nil
}

func (d *webcamDevice) SupportedFormats() map[webcam.PixelFormat]string {
	return d.Webcam.GetSupportedFormats()
}

// SetImageFormat discards the library's answer: in v0.6.1 it returns the
// requested size, not the driver's; ActualFormat asks the driver.
func (d *webcamDevice) SetImageFormat(fourcc, width, height uint32) error {
	_, _, _, err := d.Webcam.SetImageFormat(webcam.PixelFormat(fourcc), width, height)
	return err
}

func (d *webcamDevice) SetFramerate(fps float32) error { return d.Webcam.SetFramerate(fps) }

func (d *webcamDevice) WaitForFrame(timeout time.Duration) error {
	seconds := uint32((timeout + time.Second - 1) / time.Second)
	return d.Webcam.WaitForFrame(max(seconds, 1))
}

// ActualFormat issues VIDIOC_G_FMT on a second descriptor of the same
// device: the library keeps its descriptor private, and V4L2 lets any
// open descriptor query the current format while another one streams.
func (d *webcamDevice) ActualFormat() (driverFormat, error) {
	fd, err := unix.Open(d.path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return driverFormat{}, fmt.Errorf("open %s for VIDIOC_G_FMT: %w", d.path, err)
	}
	defer unix.Close(fd)
	return getFormat(fd)
}

// v4l2PixFormat mirrors struct v4l2_pix_format.
type v4l2PixFormat struct {
	Width, Height, PixelFormat, Field, BytesPerLine, SizeImage uint32
	Colorspace, Priv, Flags, YcbcrEnc, Quantization, XferFunc  uint32
}

// v4l2Format mirrors struct v4l2_format: a type, then a 200-byte union
// aligned like the pointers inside some of its members.
type v4l2Format struct {
	Type  uint32
	Union struct {
		Pix v4l2PixFormat
		_   [200 - unsafe.Sizeof(v4l2PixFormat{}) - unsafe.Sizeof(uintptr(0))]byte
		_   unsafe.Pointer
	}
}

const v4l2BufTypeVideoCapture = 1

// vidiocGFmt is _IOWR('V', 4, struct v4l2_format).
var vidiocGFmt = uintptr(3)<<30 | unsafe.Sizeof(v4l2Format{})<<16 | uintptr('V')<<8 | 4

func getFormat(fd int) (driverFormat, error) {
	f := v4l2Format{Type: v4l2BufTypeVideoCapture}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), vidiocGFmt, uintptr(unsafe.Pointer(&f)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return driverFormat{}, fmt.Errorf("VIDIOC_G_FMT: %w", errno)
		}
		break
	}
	p := f.Union.Pix
	return driverFormat{FourCC: p.PixelFormat, Width: p.Width, Height: p.Height, BytesPerLine: p.BytesPerLine, SizeImage: p.SizeImage}, nil
}

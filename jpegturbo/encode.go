package jpegturbo

/*
#include <turbojpeg.h>

// compress encodes into dst, which holds at least tjBufSize bytes: with
// TJFLAG_NOREALLOC libjpeg-turbo writes there and never reallocates it, so
// the output buffer can be Go memory and no Go pointer is stored in C.
static int clipd_compress(tjhandle h, const unsigned char *src, int width, int pitch, int height,
		int pixelFormat, unsigned char *dst, unsigned long *size, int subsamp, int quality) {
	unsigned char *buf = dst;
	return tjCompress2(h, src, width, pitch, height, pixelFormat, &buf, size, subsamp, quality,
		TJFLAG_NOREALLOC);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// MaxSide is the largest width and height a JPEG can have.
const MaxSide = 65535

// Encoder wraps one TurboJPEG compression handle. Like a Decoder it is for
// one goroutine at a time; Encode borrows pooled encoders.
type Encoder struct {
	h       *encHandle
	cleanup runtime.Cleanup
}

// encHandle holds the handle and the output size, which C writes and which
// lives here rather than on the stack so that cgo does not move it to the
// heap on every call.
type encHandle struct {
	tj   C.tjhandle
	size C.ulong
}

// NewEncoder allocates a TurboJPEG compression handle.
func NewEncoder() (*Encoder, error) {
	tj := C.tjInitCompress()
	if tj == nil {
		return nil, fmt.Errorf("jpegturbo: tjInitCompress: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	h := &encHandle{tj: tj}
	e := &Encoder{h: h}
	e.cleanup = runtime.AddCleanup(e, func(h *encHandle) { C.tjDestroy(h.tj) }, h)
	return e, nil
}

// Close frees the handle. The Encoder must not be used afterwards.
func (e *Encoder) Close() error {
	if e.h == nil {
		return nil
	}
	e.cleanup.Stop()
	rc := C.tjDestroy(e.h.tj)
	e.h = nil
	if rc != 0 {
		return errors.New("jpegturbo: tjDestroy failed")
	}
	return nil
}

// BufSize is the most bytes the JPEG of a width×height image can take, the
// capacity Encode needs in dst to encode without allocating.
func BufSize(width, height int) int {
	return int(C.tjBufSize(C.int(width), C.int(height), C.TJSAMP_444))
}

// Encode compresses img (Channels 3: RGB, 1: grayscale; Stride 0 means
// packed rows) as a baseline JPEG at quality 1..100, chroma subsampled
// 4:2:0 like most cameras' JPEGs. The JPEG is built in dst, which is grown
// when its capacity is below BufSize, and aliases it.
func (e *Encoder) Encode(img Image, quality int, dst []byte) ([]byte, error) {
	if e.h == nil {
		return nil, errors.New("jpegturbo: encoder is closed")
	}
	stride, err := checkImage(img)
	if err != nil {
		return nil, err
	}
	if quality < 1 || quality > 100 {
		return nil, fmt.Errorf("jpegturbo: quality %d is outside 1..100", quality)
	}
	format, subsamp := C.int(C.TJPF_RGB), C.int(C.TJSAMP_420)
	if img.Channels == 1 {
		format, subsamp = C.TJPF_GRAY, C.TJSAMP_GRAY
	}
	// The 4:4:4 bound covers every subsampling.
	need := BufSize(img.Width, img.Height)
	if cap(dst) < need {
		dst = make([]byte, need)
	}
	dst = dst[:cap(dst)]
	rc := C.clipd_compress(e.h.tj, (*C.uchar)(unsafe.Pointer(&img.Pix[0])), C.int(img.Width), C.int(stride), C.int(img.Height),
		format, (*C.uchar)(unsafe.Pointer(&dst[0])), &e.h.size, subsamp, C.int(quality))
	runtime.KeepAlive(img.Pix)
	runtime.KeepAlive(dst)
	if rc != 0 {
		return nil, fmt.Errorf("jpegturbo: encoding: %s", C.GoString(C.tjGetErrorStr2(e.h.tj)))
	}
	n := int(e.h.size)
	if n <= 0 || n > len(dst) {
		return nil, fmt.Errorf("jpegturbo: encoding gave %d bytes for a buffer of %d", n, len(dst))
	}
	return dst[:n], nil
}

// checkImage validates an image to encode and returns its row stride.
func checkImage(img Image) (int, error) {
	if img.Width <= 0 || img.Height <= 0 || img.Width > MaxSide || img.Height > MaxSide {
		return 0, fmt.Errorf("jpegturbo: cannot encode a %dx%d image", img.Width, img.Height)
	}
	if img.Channels != 1 && img.Channels != 3 {
		return 0, fmt.Errorf("jpegturbo: cannot encode %d channels (want 1 or 3)", img.Channels)
	}
	stride := img.Stride
	if stride == 0 {
		stride = img.Width * img.Channels
	}
	if stride < img.Width*img.Channels {
		return 0, fmt.Errorf("jpegturbo: stride %d is less than width %d x %d channels", stride, img.Width, img.Channels)
	}
	if need := stride*(img.Height-1) + img.Width*img.Channels; len(img.Pix) < need {
		return 0, fmt.Errorf("jpegturbo: %dx%d image has %d bytes of pixels, needs %d", img.Width, img.Height, len(img.Pix), need)
	}
	return stride, nil
}

var encoders = sync.Pool{New: func() any {
	e, err := NewEncoder()
	if err != nil {
		return err
	}
	return e
}}

// Encode encodes with a pooled Encoder; see Encoder.Encode.
func Encode(img Image, quality int, dst []byte) ([]byte, error) {
	var e *Encoder
	switch v := encoders.Get().(type) {
	case *Encoder:
		e = v
	case error:
		return nil, v
	default:
		return nil, errors.New("jpegturbo: encoder pool returned an unexpected value")
	}
	defer encoders.Put(e)
	return e.Encode(img, quality, dst)
}

// Package jpegturbo decodes JPEG images with libjpeg-turbo's TurboJPEG API,
// the decoder Pillow links against, so that decoded pixels are the ones the
// original CLIP preprocessing saw (ISLOW integer DCT and fancy upsampling,
// which are TurboJPEG's defaults and Pillow's), and encodes JPEGs (for
// snapshots) with the same library. It is the only package in clipd's
// preprocessing that uses cgo.
//
// A Decoder or Encoder owns one TurboJPEG handle and must be used by one
// goroutine at a time; Decode, DecodeHeader and Encode borrow pooled ones
// for callers that do not want to manage one. C never keeps a Go pointer
// past a call.
package jpegturbo

/*
#cgo pkg-config: libturbojpeg
#include <stdlib.h>
#include <turbojpeg.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// DefaultMaxPixels bounds the image area a new Decoder accepts, so that a
// corrupt or hostile header cannot make it allocate gigabytes.
const DefaultMaxPixels = 64 << 20

// Header describes a JPEG image without decoding it.
type Header struct {
	Width, Height int
	// Channels is what Decode produces: 1 for grayscale JPEGs (Pillow's "L"
	// mode), 3 (RGB) for everything else it supports.
	Channels int
}

// Image is pixels: Channels bytes per pixel, Stride bytes a row. Decode
// produces packed rows (Stride 0, meaning Width*Channels).
type Image struct {
	Width, Height, Channels int
	Pix                     []byte
	Stride                  int
}

// Decoder wraps one TurboJPEG decompression handle.
type Decoder struct {
	// MaxPixels rejects images whose Width*Height exceeds it.
	MaxPixels int

	h       *handle
	cleanup runtime.Cleanup
}

// handle is kept apart from Decoder so that a cleanup can free a handle whose
// Decoder was dropped (for instance by sync.Pool) without Close.
// hdr receives tjDecompressHeader3's outputs; it lives here rather than on
// the stack because cgo would move stack variables whose address C gets to
// the heap on every call.
type handle struct {
	tj  C.tjhandle
	hdr [4]C.int
}

// NewDecoder allocates a TurboJPEG handle.
func NewDecoder() (*Decoder, error) {
	tj := C.tjInitDecompress()
	if tj == nil {
		return nil, fmt.Errorf("jpegturbo: tjInitDecompress: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	h := &handle{tj: tj}
	d := &Decoder{MaxPixels: DefaultMaxPixels, h: h}
	d.cleanup = runtime.AddCleanup(d, func(h *handle) { C.tjDestroy(h.tj) }, h)
	return d, nil
}

// Close frees the handle. The Decoder must not be used afterwards.
func (d *Decoder) Close() error {
	if d.h == nil {
		return nil
	}
	d.cleanup.Stop()
	rc := C.tjDestroy(d.h.tj)
	d.h = nil
	if rc != 0 {
		return errors.New("jpegturbo: tjDestroy failed")
	}
	return nil
}

func (d *Decoder) lastError(call string) error {
	kind := "error"
	if C.tjGetErrorCode(d.h.tj) == C.TJERR_WARNING {
		// libjpeg reports truncated or corrupt entropy data as warnings
		// and fills the rest with grey; for a classifier that is a wrong
		// image, so it is an error here just as Pillow raises on it.
		kind = "corrupt data"
	}
	err := fmt.Errorf("jpegturbo: %s: %s: %s", call, kind, C.GoString(C.tjGetErrorStr2(d.h.tj)))
	d.reset()
	return err
}

// reset replaces the handle after a failed call: TurboJPEG 2.1 does not abort
// the libjpeg state when reading a header fails, and the next image would
// then be parsed as the continuation of the broken one.
func (d *Decoder) reset() {
	tj := C.tjInitDecompress()
	if tj == nil {
		return // keep the old handle; the next call reports its own error
	}
	d.cleanup.Stop()
	C.tjDestroy(d.h.tj)
	h := &handle{tj: tj}
	d.h = h
	d.cleanup = runtime.AddCleanup(d, func(h *handle) { C.tjDestroy(h.tj) }, h)
}

// DecodeHeader reads the image size and colour space.
func (d *Decoder) DecodeHeader(jpeg []byte) (Header, error) {
	if d.h == nil {
		return Header{}, errors.New("jpegturbo: decoder is closed")
	}
	if len(jpeg) == 0 {
		return Header{}, errors.New("jpegturbo: empty JPEG data")
	}
	o := &d.h.hdr
	rc := C.tjDecompressHeader3(d.h.tj, (*C.uchar)(unsafe.Pointer(&jpeg[0])), C.ulong(len(jpeg)), &o[0], &o[1], &o[2], &o[3])
	w, h, colorspace := o[0], o[1], o[3]
	runtime.KeepAlive(jpeg)
	if rc != 0 {
		return Header{}, d.lastError("reading header")
	}
	hdr := Header{Width: int(w), Height: int(h), Channels: 3}
	switch colorspace {
	case C.TJCS_GRAY:
		hdr.Channels = 1
	case C.TJCS_CMYK, C.TJCS_YCCK:
		return hdr, fmt.Errorf("jpegturbo: unsupported colour space (CMYK/YCCK JPEG, %dx%d)", hdr.Width, hdr.Height)
	}
	if hdr.Width <= 0 || hdr.Height <= 0 {
		return hdr, fmt.Errorf("jpegturbo: bad image size %dx%d", hdr.Width, hdr.Height)
	}
	if d.MaxPixels > 0 && hdr.Width*hdr.Height > d.MaxPixels {
		return hdr, fmt.Errorf("jpegturbo: image %dx%d exceeds the limit of %d pixels", hdr.Width, hdr.Height, d.MaxPixels)
	}
	return hdr, nil
}

// Decode decodes jpeg into dst, reallocating it only when it is too small,
// and returns the image whose Pix aliases the (possibly new) buffer.
func (d *Decoder) Decode(jpeg []byte, dst []byte) (Image, error) {
	hdr, err := d.DecodeHeader(jpeg)
	if err != nil {
		return Image{}, err
	}
	n := hdr.Width * hdr.Height * hdr.Channels
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	format := C.int(C.TJPF_RGB)
	if hdr.Channels == 1 {
		format = C.TJPF_GRAY
	}
	// Flags 0: accurate ISLOW DCT and fancy upsampling, libjpeg's defaults
	// and therefore Pillow's.
	rc := C.tjDecompress2(d.h.tj, (*C.uchar)(unsafe.Pointer(&jpeg[0])), C.ulong(len(jpeg)),
		(*C.uchar)(unsafe.Pointer(&dst[0])), C.int(hdr.Width), C.int(hdr.Width*hdr.Channels), C.int(hdr.Height), format, 0)
	runtime.KeepAlive(jpeg)
	runtime.KeepAlive(dst)
	if rc != 0 {
		return Image{}, d.lastError("decoding")
	}
	return Image{Width: hdr.Width, Height: hdr.Height, Channels: hdr.Channels, Pix: dst}, nil
}

var pool = sync.Pool{New: func() any {
	d, err := NewDecoder()
	if err != nil {
		return err
	}
	return d
}}

func borrow() (*Decoder, error) {
	switch v := pool.Get().(type) {
	case *Decoder:
		return v, nil
	case error:
		return nil, v
	}
	return nil, errors.New("jpegturbo: decoder pool returned an unexpected value")
}

// Decode decodes with a pooled Decoder; see Decoder.Decode.
func Decode(jpeg []byte, dst []byte) (Image, error) {
	d, err := borrow()
	if err != nil {
		return Image{}, err
	}
	defer pool.Put(d)
	return d.Decode(jpeg, dst)
}

// DecodeHeader reads a header with a pooled Decoder.
func DecodeHeader(jpeg []byte) (Header, error) {
	d, err := borrow()
	if err != nil {
		return Header{}, err
	}
	defer pool.Put(d)
	return d.DecodeHeader(jpeg)
}

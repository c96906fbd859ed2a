package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// maxStreamJPEG bounds one image in a JPEG stream, so that a stream that
// never ends an image cannot grow a buffer without limit. An 8K frame at
// the highest quality stays well below it.
const maxStreamJPEG = 32 << 20

// errBadJPEG marks an image in the stream that is cut off or malformed; the
// stream itself stays usable (the reader resynchronises on the next SOI).
var errBadJPEG = errors.New("bad image in the JPEG stream")

// jpegStream splits a byte stream of concatenated JPEG images, as ffmpeg's
// mjpeg muxer writes them, into images. It walks the marker segments by
// their lengths and scans only entropy-coded data for markers, so the EOI
// of an embedded EXIF thumbnail does not end an image early. Bytes between
// images are skipped.
type jpegStream struct {
	r *bufio.Reader
	// sawSOI is set when a new image's SOI cut the previous one short: the
	// SOI is already consumed.
	sawSOI bool
}

func newJPEGStream(r io.Reader) *jpegStream {
	return &jpegStream{r: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next image, SOI to EOI inclusive, in dst's storage where
// it is large enough. At the end of the stream it returns io.EOF, or
// io.ErrUnexpectedEOF when an image was cut off. An error wrapping
// errBadJPEG drops one image; calling next again goes on with the rest.
func (s *jpegStream) next(dst []byte) ([]byte, error) {
	if !s.sawSOI {
		if err := s.syncToSOI(); err != nil {
			return nil, err
		}
	}
	s.sawSOI = false
	out := append(dst[:0], 0xFF, 0xD8)
	inScan := false
	for {
		if len(out) > maxStreamJPEG {
			return nil, fmt.Errorf("%w: no end of image within %d MiB", errBadJPEG, maxStreamJPEG>>20)
		}
		if inScan {
			// Entropy-coded data: jump from 0xFF to 0xFF.
			chunk, err := s.r.ReadSlice(0xFF)
			out = append(out, chunk...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				return nil, truncated(err)
			}
		} else {
			b, err := s.r.ReadByte()
			if err != nil {
				return nil, truncated(err)
			}
			if b != 0xFF {
				return nil, fmt.Errorf("%w: byte 0x%02X where a marker should start, at offset %d", errBadJPEG, b, len(out))
			}
			out = append(out, b)
		}
		marker, err := s.r.ReadByte()
		for err == nil && marker == 0xFF { // fill bytes
			out = append(out, marker)
			marker, err = s.r.ReadByte()
		}
		if err != nil {
			return nil, truncated(err)
		}
		out = append(out, marker)
		switch {
		case marker == 0x00 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01:
			// Byte stuffing, restart markers, TEM: no length, no change.
			if !inScan && marker == 0x00 {
				return nil, fmt.Errorf("%w: invalid marker 0xFF00 at offset %d", errBadJPEG, len(out)-2)
			}
			continue
		case marker == 0xD9:
			return out, nil
		case marker == 0xD8:
			s.sawSOI = true
			return nil, fmt.Errorf("%w: image cut off by the next one after %d bytes", errBadJPEG, len(out)-2)
		}
		var length [2]byte
		if _, err := io.ReadFull(s.r, length[:]); err != nil {
			return nil, truncated(err)
		}
		n := int(length[0])<<8 | int(length[1])
		if n < 2 {
			return nil, fmt.Errorf("%w: marker 0xFF%02X with segment length %d", errBadJPEG, marker, n)
		}
		out = append(out, length[:]...)
		start := len(out)
		out = append(out, make([]byte, n-2)...)
		if _, err := io.ReadFull(s.r, out[start:]); err != nil {
			return nil, truncated(err)
		}
		// A scan's entropy data follows its header; any other segment is
		// followed by a marker (progressive images have several scans).
		inScan = marker == 0xDA
	}
}

// syncToSOI consumes bytes up to and including the next SOI marker. It
// returns io.EOF when the stream ends before one.
func (s *jpegStream) syncToSOI() error {
	for {
		if _, err := s.r.ReadSlice(0xFF); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			return err
		}
		b, err := s.r.ReadByte()
		for err == nil && b == 0xFF {
			b, err = s.r.ReadByte()
		}
		if err != nil {
			return err
		}
		if b == 0xD8 {
			return nil
		}
	}
}

// truncated turns the end of the stream inside an image into
// io.ErrUnexpectedEOF.
func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

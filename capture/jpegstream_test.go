package capture

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// withThumbnail inserts an APP1 segment holding a whole JPEG (SOI..EOI)
// after the SOI, as EXIF thumbnails are stored.
func withThumbnail(img, thumb []byte) []byte {
	payload := append([]byte("Exif\x00\x00"), thumb...)
	n := len(payload) + 2
	out := append([]byte{0xFF, 0xD8, 0xFF, 0xE1, byte(n >> 8), byte(n)}, payload...)
	return append(out, img[2:]...)
}

// withTrailingSegments puts a comment segment and a restart marker between
// the scan data and EOI, as a second scan of a progressive image would be.
func withTrailingSegments(img []byte) []byte {
	body := img[:len(img)-2]
	out := append(bytes.Clone(body), 0xFF, 0xD0, 0x12, 0x34)
	out = append(out, 0xFF, 0xFE, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD8) // a comment that looks like markers
	return append(out, 0xFF, 0xDA, 0x00, 0x02, 0x55, 0xFF, 0x00, 0xFF, 0xFF, 0xD9)
}

func readAll(t *testing.T, stream []byte) (images [][]byte, bad int, end error) {
	t.Helper()
	js := newJPEGStream(bytes.NewReader(stream))
	var buf []byte
	for range len(stream) + 2 {
		img, err := js.next(buf)
		switch {
		case errors.Is(err, errBadJPEG):
			bad++
		case err != nil:
			return images, bad, err
		default:
			images = append(images, bytes.Clone(img))
			buf = img
		}
	}
	t.Fatal("the stream reader does not make progress")
	return
}

func TestJPEGStreamSplitsImages(t *testing.T) {
	a, b := testJPEG(t, 48, 32), testJPEG(t, 40, 24)
	thumbed := withThumbnail(a, b)
	trailing := withTrailingSegments(b)
	cut := a[:len(a)-10] // inside the scan, where most of an image is
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name   string
		stream []byte
		want   [][]byte
		bad    int
		end    error
	}{
		{"back to back", cat(a, b, a), [][]byte{a, b, a}, 0, io.EOF},
		{"garbage around", cat([]byte("junk\xFF\xFF\x00"), a, []byte{0xFF, 0xD9, 0, 1}, b, []byte("tail")), [][]byte{a, b}, 0, io.EOF},
		{"fill bytes before SOI", cat([]byte{0xFF, 0xFF}, a[1:]), [][]byte{a}, 0, io.EOF},
		{"thumbnail's EOI does not end the image", cat(thumbed, b), [][]byte{thumbed, b}, 0, io.EOF},
		{"segments after the scan", cat(trailing, a), [][]byte{trailing, a}, 0, io.EOF},
		{"image cut by the next", cat(cut, b), [][]byte{b}, 1, io.EOF},
		{"stream cut inside an image", cat(a, cut), [][]byte{a}, 0, io.ErrUnexpectedEOF},
		{"no marker where one must be", cat([]byte{0xFF, 0xD8, 0x12}, a), [][]byte{a}, 1, io.EOF},
		{"segment length below 2", cat([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01}, a), [][]byte{a}, 1, io.EOF},
		{"empty", nil, nil, 0, io.EOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			images, bad, end := readAll(t, c.stream)
			if len(images) != len(c.want) || bad != c.bad || end != c.end {
				t.Fatalf("%d images, %d bad, end %v; want %d, %d, %v", len(images), bad, end, len(c.want), c.bad, c.end)
			}
			for i := range images {
				if !bytes.Equal(images[i], c.want[i]) {
					t.Errorf("image %d: %d bytes, want %d", i, len(images[i]), len(c.want[i]))
				}
			}
		})
	}
}

// A stream that never ends its image stops at maxStreamJPEG, not at the
// end of memory.
func TestJPEGStreamBoundsAnImage(t *testing.T) {
	header := testJPEG(t, 16, 16)
	sos := bytes.Index(header, []byte{0xFF, 0xDA})
	scanStart := sos + 2 + (int(header[sos+2])<<8 | int(header[sos+3]))
	endless := io.MultiReader(bytes.NewReader(header[:scanStart]), zeros{})
	_, err := newJPEGStream(endless).next(nil)
	if !errors.Is(err, errBadJPEG) {
		t.Fatalf("endless image: %v, want errBadJPEG", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func FuzzJPEGStream(f *testing.F) {
	a, b := testJPEG(f, 48, 32), testJPEG(f, 40, 24)
	f.Add(append(bytes.Clone(a), b...))
	f.Add(withThumbnail(a, b))
	f.Add(withTrailingSegments(a))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xD8, 0xFF, 0xD9})
	f.Fuzz(func(t *testing.T, stream []byte) {
		js := newJPEGStream(bytes.NewReader(stream))
		total := 0
		for range len(stream) + 2 {
			img, err := js.next(nil)
			if errors.Is(err, errBadJPEG) {
				continue
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("error %v from an in-memory stream", err)
				}
				return
			}
			if !bytes.HasPrefix(img, []byte{0xFF, 0xD8}) || !bytes.HasSuffix(img, []byte{0xFF, 0xD9}) {
				t.Fatalf("image % X does not run from SOI to EOI", img)
			}
			if total += len(img); total > len(stream) {
				t.Fatalf("images hold %d bytes of a %d-byte stream", total, len(stream))
			}
		}
		t.Fatal("the stream reader does not make progress")
	})
}

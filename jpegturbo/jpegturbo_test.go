package jpegturbo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sharedDir locates the read-only reference data.
func sharedDir(t testing.TB) string {
	dir := os.Getenv("CLIPD_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "reference", "images")); err != nil {
		t.Skipf("reference images missing (%v); set CLIPD_SHARED to the shared data directory", err)
	}
	return dir
}

// testImage is a smooth colourful pattern with edges, so that chroma
// subsampling and the DCT both matter.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x ^ y) * 7), 255}
			if (x/13+y/9)%2 == 0 {
				c.B = 255 - c.B
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// stripSegments removes every marker segment with the given marker code
// before SOS, the way MJPEG cameras omit their Huffman tables.
func stripSegments(t testing.TB, data []byte, marker byte) []byte {
	out := append([]byte{}, data[:2]...)
	pos := 2
	for {
		if data[pos] != 0xFF {
			t.Fatalf("no marker at %d", pos)
		}
		m := data[pos+1]
		if m == markerSOS {
			return append(out, data[pos:]...)
		}
		n := int(data[pos+2])<<8 | int(data[pos+3])
		if m != marker {
			out = append(out, data[pos:pos+2+n]...)
		}
		pos += 2 + n
	}
}

func TestDecodeMatchesPillow(t *testing.T) {
	dir := sharedDir(t)
	python := os.Getenv("CLIPD_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	files, _ := filepath.Glob(filepath.Join(dir, "reference", "images", "*.jpg"))
	if len(files) == 0 {
		t.Skip("no reference JPEGs")
	}
	script := `import sys, hashlib
from PIL import Image
for f in sys.argv[1:]:
    print(hashlib.sha256(Image.open(f).tobytes()).hexdigest())`
	out, err := exec.Command(python, append([]string{"-c", script}, files...)...).Output()
	if err != nil {
		t.Skipf("Pillow not available through %s (%v); set CLIPD_PYTHON", python, err)
	}
	want := strings.Fields(string(out))
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var buf []byte
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := d.Decode(data, buf)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		buf = img.Pix
		sum := sha256.Sum256(img.Pix)
		if got := hex.EncodeToString(sum[:]); got != want[i] {
			t.Errorf("%s: decoded pixels differ from Pillow's (sha256 %s, want %s)", filepath.Base(f), got, want[i])
		}
	}
}

func TestRepairInsertsStandardTables(t *testing.T) {
	full := encodeJPEG(t, testImage(97, 61))
	noDHT := stripSegments(t, full, markerDHT)
	if bytes.Contains(noDHT[:bytes.Index(noDHT, []byte{0xFF, markerSOS})], []byte{0xFF, markerDHT}) {
		t.Fatal("test frame still has a DHT")
	}
	noEOI := noDHT[:len(noDHT)-2]
	padded := append(append([]byte{}, noDHT...), make([]byte, 100)...)

	want, err := Decode(full, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, frame := range map[string][]byte{"no DHT": noDHT, "no DHT, no EOI": noEOI, "no DHT, zero padding": padded} {
		fixed, err := RepairMJPEG(nil, frame)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		scan := bytes.Index(fixed, []byte{0xFF, markerSOS})
		if !bytes.Contains(fixed[:scan], standardDHT) || !bytes.HasSuffix(fixed, []byte{0xFF, markerEOI}) {
			t.Errorf("%s: repaired frame lacks the standard DHT before SOS or the final EOI", name)
		}
		got, err := Decode(fixed, nil)
		if err != nil {
			t.Fatalf("%s: decoding the repaired frame: %v", name, err)
		}
		if got.Width != 97 || got.Height != 61 || !bytes.Equal(got.Pix, want.Pix) {
			t.Errorf("%s: repaired frame decodes differently from the original JPEG", name)
		}
	}

	same, err := RepairMJPEG(nil, full)
	if err != nil {
		t.Fatal(err)
	}
	if &same[0] != &full[0] || len(same) != len(full) {
		t.Error("a complete JPEG was copied instead of returned as is")
	}

	buf := make([]byte, 0, 2*len(full))
	fixed, err := RepairMJPEG(buf, noEOI)
	if err != nil {
		t.Fatal(err)
	}
	if &fixed[:1][0] != &buf[:1][0] {
		t.Error("repair did not reuse the caller's buffer")
	}
	if n := testing.AllocsPerRun(20, func() { _, _ = RepairMJPEG(buf, noEOI) }); n != 0 {
		t.Errorf("RepairMJPEG allocates %.0f times with a large enough buffer", n)
	}
}

func TestCorruptFramesAreErrors(t *testing.T) {
	full := encodeJPEG(t, testImage(64, 48))
	sos := bytes.Index(full, []byte{0xFF, markerSOS})
	cases := map[string][]byte{
		"empty":             {},
		"not a JPEG":        []byte("\x89PNG\r\n\x1a\n0000"),
		"header only":       full[:sos],
		"truncated scan":    full[:sos+(len(full)-sos)/2],
		"garbage scan":      append(append(append([]byte{}, full[:sos+14]...), bytes.Repeat([]byte{0xFF, 0x13}, 200)...), 0xFF, 0xD9),
		"segment too long":  append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x7F, 0xFF}, full[4:40]...),
		"SOI then garbage":  []byte{0xFF, 0xD8, 1, 2, 3, 4, 5, 6},
		"bad marker length": {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0xFF, 0xDA},
	}
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for name, data := range cases {
		if _, err := d.Decode(data, nil); err == nil {
			t.Errorf("%s: Decode gave no error", name)
		}
		if fixed, err := RepairMJPEG(nil, data); err == nil {
			if _, err := d.Decode(fixed, nil); err == nil {
				t.Errorf("%s: repaired frame decoded without error", name)
			}
		}
	}
	// The decoder stays usable after errors.
	if _, err := d.Decode(full, nil); err != nil {
		t.Fatalf("decoder broken after errors: %v", err)
	}
}

func TestGrayscaleJPEG(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 40, 30))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 3)
	}
	img, err := Decode(encodeJPEG(t, g), nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Channels != 1 || len(img.Pix) != 40*30 {
		t.Fatalf("grayscale JPEG decoded as %d channels, %d bytes", img.Channels, len(img.Pix))
	}
	// JPEG is lossy; the decode must still be close to the source.
	for i, v := range img.Pix {
		if d := int(v) - int(g.Pix[i]); d < -24 || d > 24 {
			t.Fatalf("pixel %d: %d, source %d", i, v, g.Pix[i])
		}
	}
}

func TestMaxPixels(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.MaxPixels = 100
	if _, err := d.Decode(encodeJPEG(t, testImage(20, 20)), nil); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized image: err = %v", err)
	}
}

func FuzzRepairAndDecode(f *testing.F) {
	full := encodeJPEG(f, testImage(33, 17))
	f.Add(full)
	f.Add(stripSegments(f, full, markerDHT))
	f.Add(full[:len(full)/2])
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xDA})
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	d.MaxPixels = 1 << 20
	f.Fuzz(func(t *testing.T, frame []byte) {
		fixed, err := RepairMJPEG(nil, frame)
		if err != nil {
			return
		}
		img, err := d.Decode(fixed, nil)
		if err != nil {
			return
		}
		if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*img.Channels {
			t.Fatalf("inconsistent image %dx%dx%d with %d bytes", img.Width, img.Height, img.Channels, len(img.Pix))
		}
	})
}

func BenchmarkDecode1080p(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(sharedDir(b), "reference", "images", "img2_1920x1080.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		img, err := d.Decode(data, buf)
		if err != nil {
			b.Fatal(err)
		}
		buf = img.Pix
	}
}

func TestDecodeReusesBuffer(t *testing.T) {
	jpg := encodeJPEG(t, testImage(64, 48))
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	img, err := d.Decode(jpg, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := img.Pix
	if n := testing.AllocsPerRun(10, func() { _, _ = d.Decode(jpg, buf) }); n != 0 {
		t.Errorf("Decode into a large enough buffer allocates %.0f times", n)
	}
}

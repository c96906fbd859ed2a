package preprocess

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pngDeclaring is a well-formed PNG whose IHDR declares w x h RGB pixels
// and whose data is a single empty IDAT: tiny on disk, gigabytes if a
// decoder believed the header.
func pngDeclaring(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		body := append([]byte(typ), data...)
		b.Write(body)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(body))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

// jpegDeclaring is a real JPEG whose SOF0 frame header is rewritten to
// declare w x h.
func jpegDeclaring(t *testing.T, w, h uint16) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewRGBA(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	i := bytes.Index(data, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0 in Go's JPEG")
	}
	binary.BigEndian.PutUint16(data[i+5:], h)
	binary.BigEndian.PutUint16(data[i+7:], w)
	return data
}

func heapGrowth(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestImageHeadersOverThePixelLimitAreRefusedBeforeDecoding(t *testing.T) {
	p := New(DefaultConfig())
	defer p.Close()
	dst := make([]float32, p.TensorLen())
	for name, data := range map[string][]byte{
		"png 20000x20000":  pngDeclaring(20000, 20000),
		"jpeg 20000x20000": jpegDeclaring(t, 20000, 20000),
	} {
		var err error
		grew := heapGrowth(func() { err = p.Image(data, dst) })
		if err == nil || !strings.Contains(err.Error(), "exceeds the limit of 100000000 pixels") {
			t.Errorf("%s: %v, want the pixel limit", name, err)
		}
		if grew > 16<<20 {
			t.Errorf("%s: refusing it allocated %d MB", name, grew>>20)
		}
	}
	small := New(Config{MaxPixels: 1000})
	defer small.Close()
	if err := small.Image(pngDeclaring(40, 30), dst); err == nil || !strings.Contains(err.Error(), "40x30 exceeds the limit of 1000") {
		t.Errorf("configured limit: %v", err)
	}
}

// Errors about a file that is not an image reach socket clients; they must
// say what is wrong without quoting the file.
func TestNotAnImageErrorQuotesNothing(t *testing.T) {
	p := New(DefaultConfig())
	defer p.Close()
	path := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(path, []byte("root:*:20000:0:99999:7:::\n"), 0o600)
	err := p.File(path, make([]float32, p.TensorLen()))
	if err == nil || !strings.Contains(err.Error(), "not a PNG or JPEG image") {
		t.Fatalf("err = %v", err)
	}
	for _, leak := range []string{"root", "72 6f 6f 74", "27 bytes"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q reveals the file's content (%q)", err, leak)
		}
	}
}

func TestFileRefusesFIFOsDevicesAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o644)
	sparse := filepath.Join(dir, "sparse.png")
	f, _ := os.Create(sparse)
	f.Truncate(2 << 30)
	f.Close()
	p := New(DefaultConfig())
	defer p.Close()
	for path, want := range map[string]string{
		fifo:           "not a regular file",
		"/dev/zero":    "not a regular file",
		"/dev/urandom": "not a regular file",
		sparse:         "file too large",
	} {
		done := make(chan error, 1)
		go func() { done <- p.File(path, make([]float32, p.TensorLen())) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", path, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: File blocked", path)
		}
	}
}

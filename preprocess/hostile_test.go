package preprocess

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/testimage"
)

// jpegDeclaring is a real JPEG whose frame header declares w x h.
func jpegDeclaring(t *testing.T, w, h uint16) []byte {
	data, err := testimage.JPEGDeclaring(w, h)
	if err != nil {
		t.Fatal(err)
	}
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
		"png 20000x20000":  testimage.PNGDeclaring(20000, 20000),
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
	if err := small.Image(testimage.PNGDeclaring(40, 30), dst); err == nil || !strings.Contains(err.Error(), "40x30 exceeds the limit of 1000") {
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

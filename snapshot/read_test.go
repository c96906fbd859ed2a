package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// written waits until the writer has written n snapshots.
func written(t *testing.T, w *Writer, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.Stats().Written < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d snapshots written within 30 s, want %d", w.Stats().Written, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadReturnsSavedSnapshot(t *testing.T) {
	w := newWriter(t, Config{})
	f := at(frames(t, 64, 48)["rgb24"], t0, 7)
	p, err := w.Save("front", "gate", f, nil)
	if err != nil {
		t.Fatal(err)
	}
	written(t, w, 1)
	jpg, err := w.Read(filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	if img := decode(t, jpg); img.Width != 64 || img.Height != 48 {
		t.Errorf("read back a %dx%d picture, saved 64x48", img.Width, img.Height)
	}
	onDisk, _ := os.ReadFile(p)
	if string(onDisk) != string(jpg) {
		t.Error("Read returned other bytes than the file holds")
	}
}

func TestReadRefusesWhatIsNotASnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snapshots")
	w := newWriter(t, Config{Dir: dir})
	outside := filepath.Join(t.TempDir(), "secret.jpg")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Named like snapshots, but a link out of the directory, a FIFO (an
	// open that would block) and a directory.
	link := "cam-20250304T050607.890Z-1.jpg"
	fifo := "cam-20250304T050607.890Z-2.jpg"
	sub := "cam-20250304T050607.890Z-3.jpg"
	if err := os.Symlink(outside, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
		t.Fatal(err)
	}
	// Names no snapshot has: paths, traversal, other files.
	for _, name := range []string{"", ".", "..", "../secret.jpg", "/etc/passwd", outside, "cam/../../secret.jpg",
		"notes.txt", "cam-20250304T050607.890Z-1.jpg/", strings.Repeat("a", 5000) + ".jpg",
		".tmp-cam-20250304T050607.890Z-1.jpg", "CAM-20250304T050607.890Z-1.jpg"} {
		if _, err := w.Read(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Read(%.60q): %v, want ErrNotFound", name, err)
		}
	}
	for _, name := range []string{link, fifo, sub} {
		data, err := w.Read(name)
		if err == nil {
			t.Errorf("Read(%s) = %q, want an error", name, data)
		}
		if strings.Contains(string(data), "secret") {
			t.Errorf("Read(%s) reached outside the directory", name)
		}
	}
	if _, err := w.Read("cam-20250304T050607.890Z-99.jpg"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing snapshot: %v, want ErrNotFound", err)
	}
	w.Close()
	if _, err := w.Read(link); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
}

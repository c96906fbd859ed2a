package safefile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadFileRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	want := bytes.Repeat([]byte("abc"), 5000)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p, int64(len(want)))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadFile at exactly the limit: %d bytes, %v", len(got), err)
	}
	if _, err := ReadFile(p, int64(len(want))-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over the limit: %v, want ErrTooLarge", err)
	}
}

func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zeroLink := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zeroLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", "/dev/urandom", zeroLink, dir} {
		done := make(chan error, 1)
		go func() {
			_, err := ReadFile(p, 1<<20)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("%s: %v, want ErrNotRegular", p, err)
			} else if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error %q does not name the path", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadFile blocked", p)
		}
	}
}

func TestReadFileSparseHugeFileIsRefusedBeforeReading(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = ReadFile(p, 1<<20)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "2.0 GiB") {
		t.Fatalf("2 GiB sparse file: %v", err)
	}
}

func TestReadFileProcFileIsBounded(t *testing.T) {
	// /proc files report size 0; the limit still applies to what is read.
	data, err := ReadFile("/proc/self/status", 1<<20)
	if err != nil || !bytes.Contains(data, []byte("Name:")) {
		t.Fatalf("/proc/self/status: %q, %v", data, err)
	}
	if _, err := ReadFile("/proc/self/status", 10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/proc/self/status with a 10-byte limit: %v", err)
	}
}

func TestOpenBeneathStaysInside(t *testing.T) {
	t.Run("openat2", testOpenBeneath)
	t.Run("without-openat2", func(t *testing.T) {
		saved := openat2
		openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
		defer func() { openat2 = saved }()
		testOpenBeneath(t)
	})
}

func testOpenBeneath(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "sub", "ok.png"), []byte("ok"), 0o644)
	os.Symlink(outside, filepath.Join(root, "abs-link"))
	os.Symlink("../"+filepath.Base(filepath.Dir(outside))+"/secret", filepath.Join(root, "rel-link"))
	os.Symlink("sub/ok.png", filepath.Join(root, "inner-link"))
	dir, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()

	for _, rel := range []string{"sub/ok.png", "inner-link", "sub/../sub/ok.png"} {
		f, _, err := OpenBeneath(dir, rel)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != "ok" {
			t.Errorf("%s: read %q", rel, b)
		}
	}
	for _, rel := range []string{"../" + filepath.Base(root), "abs-link", "rel-link", outside, "/etc/passwd", "sub/../../x"} {
		if f, _, err := OpenBeneath(dir, rel); err == nil {
			f.Close()
			t.Errorf("%s: opened a file outside the root", rel)
		}
	}
}

func TestLimitReaderFailsPastTheLimit(t *testing.T) {
	r := LimitReader(strings.NewReader(strings.Repeat("x", 100)), 99, "vocab.gz")
	if _, err := io.ReadAll(r); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "vocab.gz") {
		t.Fatalf("100 bytes through a 99-byte limit: %v", err)
	}
	r = LimitReader(strings.NewReader(strings.Repeat("x", 99)), 99, "vocab.gz")
	if b, err := io.ReadAll(r); err != nil || len(b) != 99 {
		t.Fatalf("99 bytes through a 99-byte limit: %d, %v", len(b), err)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 bytes", 1023: "1023 bytes", 1024: "1.0 KiB", 3 << 29: "1.5 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// Package safefile reads files that a client, an operator or an attacker
// may have put anywhere: a labels path turned into a FIFO, a symlink to
// /dev/zero, a 2 GB sparse file named as an image. Every open is
// non-blocking and checked with fstat to be a regular file, and every read
// is bounded, so that no such file can hang a goroutine, exhaust threads
// or memory, or be read in part. Its writes (WriteAtomic) are whole or
// not at all, so that no reader, clipd's own included, meets half a file.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotRegular is wrapped by errors for paths that name a FIFO, a
	// device, a socket or a directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is wrapped by errors for files above the caller's limit.
	ErrTooLarge = errors.New("file too large")
)

// Open opens path for reading without ever blocking (a FIFO with no
// writer would block a plain open forever) and returns it only if it is a
// regular file. The returned file is in blocking mode again, so reads of
// it behave as usual.
func Open(path string) (*os.File, os.FileInfo, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return fromFD(fd, path)
}

// OpenBeneath opens rel relative to the directory root the way Open opens
// a path, but refuses any path that would leave root: "..", absolute
// symlinks and symlinks pointing outside are all resolved inside root by
// the kernel (openat2 RESOLVE_BENEATH), so no rename or symlink swap
// between a check and the open can escape it.
func OpenBeneath(root *os.File, rel string) (*os.File, os.FileInfo, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := openat2(int(root.Fd()), rel, how)
	if errors.Is(err, unix.ENOSYS) {
		return openBeneathResolved(root, rel)
	}
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return fromFD(fd, rel)
}

// openBeneathResolved is OpenBeneath for kernels before 5.6 (JetPack 4's
// 4.9): the path is resolved in user space and checked to lie under root,
// then opened without following a final symlink. A directory swapped for
// a symlink between the check and the open could still escape, which is
// why openat2 is preferred wherever the kernel has it.
func openBeneathResolved(root *os.File, rel string) (*os.File, os.FileInfo, error) {
	base, err := filepath.EvalSymlinks(root.Name())
	if err != nil {
		return nil, nil, err
	}
	if filepath.IsAbs(rel) {
		return nil, nil, &fs.PathError{Op: "open", Path: rel, Err: unix.EXDEV}
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(base, rel))
	if err != nil {
		return nil, nil, err
	}
	if inside, err := filepath.Rel(base, resolved); err != nil || inside == ".." || strings.HasPrefix(inside, "../") {
		return nil, nil, &fs.PathError{Op: "open", Path: rel, Err: unix.EXDEV}
	}
	fd, err := unix.Open(resolved, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return fromFD(fd, rel)
}

// openat2 is a variable so that tests can run the fallback of older kernels.
var openat2 = unix.Openat2

func fromFD(fd int, path string) (*os.File, os.FileInfo, error) {
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, describeType(fi.Mode()))}
	}
	// Regular files never block, but the flag is inherited by anything
	// that later dups the descriptor; clear it.
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return f, fi, nil
}

// ReadFile reads the regular file at path, refusing it if it holds more
// than limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, fi, limit)
}

// ReadAll reads an opened file whose size fi reports, up to limit bytes.
// Files that report a size of zero (those of /proc and /sys) and files
// that grow while being read are still bounded by limit.
func ReadAll(f *os.File, fi os.FileInfo, limit int64) ([]byte, error) {
	if fi.Size() > limit {
		return nil, tooLarge(f.Name(), fi.Size(), limit)
	}
	size := fi.Size()
	if size == 0 {
		size = min(limit, 4096)
	}
	buf := make([]byte, 0, size+1)
	data, err := readUpTo(f, buf, limit+1)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: f.Name(), Err: err}
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(f.Name(), -1, limit)
	}
	return data, nil
}

// LimitReader is like io.LimitReader but fails instead of stopping at the
// limit, so that a stream that decompresses to more than expected is an
// error rather than silently truncated data.
func LimitReader(r io.Reader, limit int64, what string) io.Reader {
	return &limitedReader{r: r, left: limit, limit: limit, what: what}
}

type limitedReader struct {
	r           io.Reader
	left, limit int64
	what        string
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, fmt.Errorf("%s: %w: more than %s", l.what, ErrTooLarge, FormatBytes(l.limit))
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, fmt.Errorf("%s: %w: more than %s", l.what, ErrTooLarge, FormatBytes(l.limit))
	}
	return n, err
}

// readUpTo appends from r to buf until EOF or until buf holds limit bytes.
func readUpTo(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(limit-int64(len(buf)), int64(cap(buf))+4096)))
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func tooLarge(path string, size, limit int64) error {
	if size >= 0 {
		return &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: %s, the limit is %s", ErrTooLarge, FormatBytes(size), FormatBytes(limit))}
	}
	return &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: more than %s", ErrTooLarge, FormatBytes(limit))}
}

func describeType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "type " + m.Type().String()
}

// FormatBytes writes n in binary units ("1.5 MiB"), for error messages.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

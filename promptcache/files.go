package promptcache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/clipd/clipd/internal/safefile"
	"golang.org/x/sys/unix"
)

// errNotOurs marks a file that cannot be a segment whatever its bytes (a
// symlink, a FIFO, a device, a directory, an oversized file); such a file
// is removed like a corrupt one.
var errNotOurs = errors.New("not a segment")

type notOursError struct{ reason string }

func (e *notOursError) Error() string { return e.reason }
func (e *notOursError) Is(target error) bool {
	return target == errNotOurs
}

// openSegment opens path for reading without following a symlink and
// without blocking (a FIFO in the cache must not hang the daemon), and
// checks that it is a regular file of a size a segment can have.
func openSegment(path string) (*os.File, int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ELOOP):
			return nil, 0, &notOursError{"it is a symbolic link"}
		case errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
			return nil, 0, &notOursError{"it is a socket or a device"}
		}
		return nil, 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	switch {
	case !st.Mode().IsRegular():
		f.Close()
		return nil, 0, &notOursError{fmt.Sprintf("it is not a regular file (%s)", st.Mode().Type())}
	case st.Size() > maxSegmentBytes:
		f.Close()
		return nil, 0, &notOursError{fmt.Sprintf("%d bytes is more than a segment may hold (%d)", st.Size(), maxSegmentBytes)}
	}
	return f, st.Size(), nil
}

// readSegmentFile reads a whole segment with the checks of openSegment,
// failing if the file is not the size it had when opened.
func readSegmentFile(path string) ([]byte, error) {
	f, size, err := openSegment(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, &notOursError{fmt.Sprintf("it changed size while being read (%d bytes, then %d)", size, len(data))}
	}
	return data, nil
}

// dirEntry is one file of a cache directory.
type dirEntry struct {
	name  string
	size  int64
	mtime time.Time
	mode  fs.FileMode
}

// listDir lists at most maxDirEntries entries of dir, without following
// symlinks and without blocking on something that is not a directory.
// A missing directory lists as empty.
func listDir(dir string) ([]dirEntry, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	des, err := f.ReadDir(maxDirEntries)
	if err != nil && err != io.EOF {
		return nil, err
	}
	out := make([]dirEntry, 0, len(des))
	for _, de := range des {
		info, err := de.Info()
		if err != nil {
			continue // removed since the listing
		}
		out = append(out, dirEntry{name: de.Name(), size: info.Size(), mtime: info.ModTime(), mode: info.Mode()})
	}
	return out, nil
}

// randomName is a fresh segment file name; names are never reused, so a
// reader that found a name always finds the same bytes there or nothing.
func randomName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + segmentExt
}

// isSegmentName matches the names randomName makes.
func isSegmentName(name string) bool {
	if len(name) != 16+len(segmentExt) || name[16:] != segmentExt {
		return false
	}
	return isLowerHex(name[:16])
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// writeSegment stores data in dir under a fresh name, whole or not at
// all (see safefile.WriteAtomic). Its mtime orders segments for eviction:
// it is the newest use of any entry in the file.
func writeSegment(dir string, data []byte, mtime time.Time) (string, error) {
	path := filepath.Join(dir, randomName())
	return path, safefile.WriteAtomic(path, data, mtime)
}

// tryLock takes the maintenance lock of the cache without waiting; ok is
// false when another process holds it. The lock is an flock on a file in
// the cache, released when unlock is called or the process dies.
//
// The file is opened read-only: flock needs no write access, so a lock
// file that root created (a one-shot `sudo clipd classify`) still opens
// for the service user, whatever its owner, as long as it is readable. A
// lock file created as root is handed to the state directory's owner like
// everything else the cache creates, so that a umask of 077 cannot lock
// the service out of maintenance either.
func tryLock(path string, o owner) (unlock func(), ok bool, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0o644)
	if err != nil {
		return nil, false, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, false, fmt.Errorf("%s: the lock is not a regular file", path)
	}
	if o.chown && (int(st.Uid) != o.uid || int(st.Gid) != o.gid) {
		// On the descriptor, not the path: what was checked is what is
		// chowned.
		unix.Fchown(fd, o.uid, o.gid)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, &fs.PathError{Op: "flock", Path: path, Err: err}
	}
	return func() { unix.Close(fd) }, true, nil
}

// owner is who should own what the cache creates: when clipd runs as root
// (a one-shot command by an administrator) in a state directory that
// belongs to the service user, new directories are handed to that user so
// that the daemon can still write and clean them.
type owner struct {
	uid, gid int
	chown    bool
}

func ownerOf(stateDir string) owner {
	if os.Geteuid() != 0 {
		return owner{}
	}
	var st unix.Stat_t
	if err := unix.Stat(stateDir, &st); err != nil || st.Uid == 0 {
		return owner{}
	}
	return owner{uid: int(st.Uid), gid: int(st.Gid), chown: true}
}

// mkdirs creates each of dirs in turn (parents first) where missing.
func (o owner) mkdirs(dirs ...string) error {
	for _, d := range dirs {
		err := os.Mkdir(d, 0o755)
		switch {
		case err == nil:
			if o.chown {
				os.Lchown(d, o.uid, o.gid)
			}
		case errors.Is(err, fs.ErrExist):
			if st, serr := os.Stat(d); serr != nil || !st.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", d)
			}
		default:
			return err
		}
	}
	return nil
}

func (o owner) adopt(path string) {
	if o.chown {
		os.Lchown(path, o.uid, o.gid)
	}
}

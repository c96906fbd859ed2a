package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"

	"github.com/clipd/clipd/internal/safefile"
)

// MaxReadBytes bounds what Read returns: far above any JPEG of a camera
// frame, far below what would hurt.
const MaxReadBytes = 32 << 20

// ErrNotFound is wrapped by Read's errors for a name that is not a
// snapshot's, or a snapshot that is gone (rotated out).
var ErrNotFound = errors.New("snapshot: no such snapshot")

// ValidName says whether name is one the Writer gives files (a base name,
// never a path): the only names Read accepts.
func ValidName(name string) bool { return filePattern.MatchString(name) }

// Read returns the JPEG of the snapshot named name (the base name of a
// path Save returned). It opens the file through the directory's
// descriptor, beneath it (safefile.OpenBeneath), as a regular file of at
// most MaxReadBytes, so a name from a client can reach nothing else.
func (w *Writer) Read(name string) ([]byte, error) {
	if !ValidName(name) {
		return nil, ErrNotFound
	}
	// Close closes the directory after marking the writer closed; opening
	// under the lock keeps a Read from using a descriptor Close released.
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, ErrClosed
	}
	f, fi, err := safefile.OpenBeneath(w.dir, name)
	w.mu.Unlock()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	data, err := safefile.ReadAll(f, fi, MaxReadBytes)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if !bytes.HasPrefix(data, jpegSOI) {
		// Cut short by a crash, or planted: not a picture to serve.
		return nil, fmt.Errorf("%w: %s holds no JPEG", ErrNotFound, name)
	}
	return data, nil
}

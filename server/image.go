package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/clipd/clipd/internal/safefile"
	"golang.org/x/sys/unix"
)

// readImage reads a file a client named for classify. The threat is a
// client that names /etc/shadow, /dev/zero, a FIFO or a symlink planted
// in an allowed directory: only regular files beneath ClassifyDirs are
// read, resolved by the kernel beneath the directory (openat2
// RESOLVE_BENEATH), with a size bound. The decision about a path outside
// the directories is lexical and the same for every such path, so errors
// tell nothing about what exists there.
func (s *Server) readImage(path string) ([]byte, error) {
	if len(s.conf.ClassifyDirs) == 0 {
		return nil, errors.New(`"image" paths are not enabled on this daemon (socket.classify_dirs is empty); send the image as "image_b64"`)
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("image %s: must be an absolute path", Quote(path))
	}
	clean := filepath.Clean(path)
	for _, dir := range s.conf.ClassifyDirs {
		rel, ok := strings.CutPrefix(clean, strings.TrimSuffix(dir, "/")+"/")
		if ok && rel != "" {
			return readBeneath(dir, rel, s.conf.MaxImageBytes, path)
		}
	}
	return nil, fmt.Errorf("image %s: not under a directory this daemon reads images from (socket.classify_dirs); send the image as \"image_b64\"", Quote(path))
}

func readBeneath(dir, rel string, limit int64, shown string) ([]byte, error) {
	root, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("image %s: classify directory %s: %v", Quote(shown), dir, unwrapPath(err))
	}
	defer root.Close()
	f, fi, err := safefile.OpenBeneath(root, rel)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("image %s: no such file", Quote(shown))
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("image %s: leads out of %s (through a symlink or \"..\"); not read", Quote(shown), dir)
		}
		return nil, fmt.Errorf("image %s: %v", Quote(shown), unwrapPath(err))
	}
	defer f.Close()
	data, err := safefile.ReadAll(f, fi, limit)
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", Quote(shown), unwrapPath(err))
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

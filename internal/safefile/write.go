package safefile

import (
	"os"
	"path/filepath"
	"time"
)

// TempPrefix begins the name of every temporary file WriteAtomic makes,
// so that a directory's owner can recognise (and, once stale, remove)
// those a killed process left behind.
const TempPrefix = ".tmp-"

// WriteAtomic stores data at path with mode 0644 so that a reader sees the
// old file or the whole new one, never a part, even after a power cut: a
// temporary file beside path is written, synced, dated mtime (unless
// zero) and renamed over path, then the directory is synced.
func WriteAtomic(path string, data []byte, mtime time.Time) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if !mtime.IsZero() {
		if err = os.Chtimes(tmp, mtime, mtime); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Package snapshot saves JPEG pictures of frames: the frame that decided an
// event, with the region's box outlined, into a directory kept within a
// number of files and bytes, oldest deleted first.
//
// A Writer encodes and writes in its own goroutine, behind a queue bounded
// in bytes, so that saving never slows the classification that asks for
// it: Save only names the file and queues the frame, and a full queue drops
// the snapshot and counts it. Encode is the same picture synchronously, for
// the socket's snapshot command.
//
// Files are named CAMERA[.REGION]-TIME-SEQ.jpg (TIME the frame's capture
// time in UTC, SEQ its sequence number, a -N suffix when that name is
// taken), camera and region names being [a-z0-9_-]. They are created 0640
// in a directory created 0750, through the directory's descriptor, with
// O_EXCL|O_NOFOLLOW under a temporary name, synced, and then renamed
// without replacing anything, so a symlink or file planted in the
// directory is never followed or overwritten, and a power cut leaves a
// whole snapshot or none; deleting removes directory entries, never what
// a link points to. Only files named like snapshots count towards the
// limits or are ever deleted; anything else in the directory is left
// alone. (internal/safefile.WriteAtomic is not used: it replaces what is
// at its path, which a planted file must never be.)
package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clipd/clipd/frame"
)

// Defaults of Config.
const (
	DefaultMaxFiles   = 1000
	DefaultMaxBytes   = 512 << 20
	DefaultQueueBytes = 64 << 20
)

// Config configures a Writer.
type Config struct {
	// Dir is the directory of the snapshots, created (0750) if missing.
	Dir string
	// MaxFiles and MaxBytes bound the snapshots kept in Dir (0: defaults).
	MaxFiles int
	MaxBytes int64
	// Quality is the JPEG quality, 1..100 (0: DefaultQuality).
	Quality int
	// QueueBytes bounds the frame data waiting to be written (0: default).
	QueueBytes int64
	// Log receives write failures; nil discards them.
	Log *slog.Logger
	// OnWritten, if set, is called from the writer's goroutine after each
	// snapshot is on disk, with its bytes (to publish them elsewhere, e.g.
	// MQTT, without encoding twice). It must not keep jpeg.
	OnWritten func(camera, region, path string, jpeg []byte)
}

// Stats are a Writer's counters.
type Stats struct {
	// Written snapshots; Dropped because the queue was full; Failed to
	// encode or write; Deleted to stay within the limits.
	Written uint64 `json:"written"`
	Dropped uint64 `json:"dropped"`
	Failed  uint64 `json:"failed"`
	Deleted uint64 `json:"deleted"`
	// Files and Bytes are the snapshots in the directory now.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Queued snapshots wait to be written, holding QueuedBytes of frames.
	Queued      int   `json:"queued"`
	QueuedBytes int64 `json:"queued_bytes"`
}

// Errors of Save.
var (
	ErrQueueFull = errors.New("snapshot: queue full, snapshot dropped")
	ErrClosed    = errors.New("snapshot: writer closed")
)

var namePattern = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// filePattern matches the names Writer gives files.
var filePattern = regexp.MustCompile(`^[a-z0-9_-]{1,64}(\.[a-z0-9_-]{1,64})?-[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9]+(-[0-9]+)?\.jpg$`)

const tmpPrefix = ".tmp-"

type job struct {
	name           string
	camera, region string
	frame          *frame.Frame
	box            *frame.Box
	size           int64
}

type entry struct {
	name string
	size int64
}

// Writer saves snapshots into a directory; see the package documentation.
type Writer struct {
	cfg Config
	log *slog.Logger
	dir *os.File // held open: files are made relative to it
	dfd int

	mu       sync.Mutex
	queue    []job
	reserved map[string]bool // names of queued snapshots
	closed   bool
	stats    Stats
	files    []entry // snapshots on disk, oldest first
	known    map[string]bool

	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// beforeWrite, when set (by tests), runs before each snapshot is
	// written.
	beforeWrite func()
}

// New validates cfg, creates the directory, indexes the snapshots already
// in it (deleting the oldest beyond the limits) and starts the writer.
func New(cfg Config) (*Writer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("snapshot: no directory")
	}
	if cfg.MaxFiles == 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.Quality == 0 {
		cfg.Quality = DefaultQuality
	}
	switch {
	case cfg.MaxFiles < 0:
		return nil, fmt.Errorf("snapshot: max_files %d is negative", cfg.MaxFiles)
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("snapshot: max_bytes %d is negative", cfg.MaxBytes)
	case cfg.QueueBytes < 0:
		return nil, fmt.Errorf("snapshot: queue bytes %d is negative", cfg.QueueBytes)
	case cfg.Quality < 1 || cfg.Quality > 100:
		return nil, fmt.Errorf("snapshot: quality %d is outside 1..100", cfg.Quality)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	dir, err := os.OpenFile(cfg.Dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	w := &Writer{
		cfg: cfg, log: log, dir: dir, dfd: int(dir.Fd()),
		reserved: map[string]bool{}, known: map[string]bool{},
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if err := w.index(); err != nil {
		dir.Close()
		return nil, err
	}
	w.enforceLimits()
	go w.run()
	return w, nil
}

// index lists the snapshots already in the directory, oldest first, and
// removes temporary files a crash left behind and snapshot files that do
// not begin like a JPEG (what a power cut may leave of a file whose name
// reached the disk before its data, on a filesystem that does not order
// them; since writeFile syncs, only files of older versions or planted
// ones).
func (w *Writer) index() error {
	ents, err := w.dir.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("snapshot: reading %s: %w", w.cfg.Dir, err)
	}
	type found struct {
		entry
		mod time.Time
	}
	var list []found
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(name, tmpPrefix) && filePattern.MatchString(name[len(tmpPrefix):]) {
			_ = unix.Unlinkat(w.dfd, name, 0)
			continue
		}
		if !filePattern.MatchString(name) {
			continue
		}
		if !w.startsLikeJPEG(name) {
			if err := unix.Unlinkat(w.dfd, name, 0); err == nil {
				w.log.Warn("deleted a snapshot that holds no JPEG", "file", name)
			}
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		list = append(list, found{entry{name, info.Size()}, info.ModTime()})
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].mod.Equal(list[j].mod) {
			return list[i].mod.Before(list[j].mod)
		}
		return list[i].name < list[j].name
	})
	for _, f := range list {
		w.files = append(w.files, f.entry)
		w.known[f.name] = true
		w.stats.Bytes += f.size
	}
	w.stats.Files = len(w.files)
	return nil
}

// jpegSOI is how every JPEG begins: the start-of-image marker and the
// first byte of the next marker.
var jpegSOI = []byte{0xff, 0xd8, 0xff}

// startsLikeJPEG says whether the directory's regular file name begins
// with jpegSOI. A file that cannot be opened or read is given the benefit
// of the doubt: it is indexed, and rotated out in time, as before.
func (w *Writer) startsLikeJPEG(name string) bool {
	fd, err := unix.Openat(w.dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return true // not what ReadDir said: left alone
	}
	head := make([]byte, len(jpegSOI))
	n, err := unix.Pread(fd, head, 0)
	if err != nil {
		return true
	}
	return bytes.Equal(head[:n], jpegSOI)
}

// Save queues a snapshot of f, with box outlined when not nil, and returns
// the path the file will have. Saving keeps a reference to f, whose Data
// must not change afterwards (frames are not changed once delivered). A
// full queue drops the snapshot: ErrQueueFull, counted in Stats.Dropped.
// Region is "" for the whole frame.
func (w *Writer) Save(camera, region string, f *frame.Frame, box *frame.Box) (string, error) {
	if !namePattern.MatchString(camera) {
		return "", fmt.Errorf("snapshot: camera name %q is not [a-z0-9_-]{1,64}", truncate(camera))
	}
	if region != "" && !namePattern.MatchString(region) {
		return "", fmt.Errorf("snapshot: region name %q is not [a-z0-9_-]{1,64}", truncate(region))
	}
	if f == nil {
		return "", errors.New("snapshot: nil frame")
	}
	var b *frame.Box
	if box != nil {
		copied := *box
		b = &copied
	}
	size := int64(len(f.Data))
	t := f.Time
	if t.IsZero() {
		t = time.Now()
	}
	base := camera
	if region != "" {
		base += "." + region
	}
	base += fmt.Sprintf("-%s-%d", t.UTC().Format("20060102T150405.000Z"), f.Seq)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return "", ErrClosed
	}
	if w.stats.QueuedBytes+size > w.cfg.QueueBytes {
		w.stats.Dropped++
		return "", ErrQueueFull
	}
	name := base + ".jpg"
	for n := 2; w.taken(name); n++ {
		name = fmt.Sprintf("%s-%d.jpg", base, n)
	}
	w.reserved[name] = true
	w.queue = append(w.queue, job{name: name, camera: camera, region: region, frame: f, box: b, size: size})
	w.stats.Queued++
	w.stats.QueuedBytes += size
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return filepath.Join(w.cfg.Dir, name), nil
}

// taken says whether a name is queued, known or present in the directory
// (as anything: a planted link takes the name too).
func (w *Writer) taken(name string) bool {
	if w.reserved[name] || w.known[name] {
		return true
	}
	var st unix.Stat_t
	return unix.Fstatat(w.dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Encode is snapshot.Encode at the writer's quality.
func (w *Writer) Encode(f *frame.Frame, box *frame.Box) ([]byte, error) {
	return Encode(f, box, w.cfg.Quality)
}

// Close writes what is queued, stops the writer and waits for it.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
		<-w.done
		w.dir.Close()
	})
	return nil
}

func (w *Writer) run() {
	defer close(w.done)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			closed := w.closed
			w.mu.Unlock()
			if closed {
				return
			}
			<-w.wake
			continue
		}
		j := w.queue[0]
		w.queue[0] = job{}
		w.queue = w.queue[1:]
		w.mu.Unlock()

		if w.beforeWrite != nil {
			w.beforeWrite()
		}
		err := w.write(j)

		w.mu.Lock()
		delete(w.reserved, j.name)
		w.stats.Queued--
		w.stats.QueuedBytes -= j.size
		if err != nil {
			w.stats.Failed++
		} else {
			w.stats.Written++
		}
		w.mu.Unlock()
		if err != nil {
			w.log.Warn("snapshot not saved", "file", j.name, "err", err)
		}
	}
}

func (w *Writer) write(j job) error {
	jpg, err := Encode(j.frame, j.box, w.cfg.Quality)
	if err != nil {
		return err
	}
	if int64(len(jpg)) > w.cfg.MaxBytes {
		return fmt.Errorf("snapshot: %d bytes, more than max_bytes %d", len(jpg), w.cfg.MaxBytes)
	}
	if err := w.writeFile(j.name, jpg); err != nil {
		return err
	}
	w.mu.Lock()
	w.files = append(w.files, entry{j.name, int64(len(jpg))})
	w.known[j.name] = true
	w.stats.Files++
	w.stats.Bytes += int64(len(jpg))
	w.mu.Unlock()
	w.enforceLimits()
	if w.cfg.OnWritten != nil {
		w.cfg.OnWritten(j.camera, j.region, filepath.Join(w.cfg.Dir, j.name), jpg)
	}
	return nil
}

// writeFile creates name in the directory with data, never following or
// replacing anything already there.
func (w *Writer) writeFile(name string, data []byte) error {
	tmp := tmpPrefix + name
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(w.dfd, tmp, flags, 0o640)
	if errors.Is(err, unix.EEXIST) {
		// A leftover of ours, or something planted: the entry goes, not
		// what it may point to.
		_ = unix.Unlinkat(w.dfd, tmp, 0)
		fd, err = unix.Openat(w.dfd, tmp, flags, 0o640)
	}
	if err != nil {
		return fmt.Errorf("snapshot: creating %s: %w", filepath.Join(w.cfg.Dir, tmp), err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		// Before the rename: otherwise a power cut can leave the name on
		// disk without the data (a 0-byte file Read would serve). The
		// directory is not synced: losing the newest snapshot's name in
		// a power cut costs a picture the event refers to, which an
		// event's snapshot path allows (see state.Event.Snapshot).
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat2(w.dfd, tmp, w.dfd, name, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// A filesystem without RENAME_NOREPLACE: a hard link does not
			// replace either.
			err = unix.Linkat(w.dfd, tmp, w.dfd, name, 0)
		}
	}
	_ = unix.Unlinkat(w.dfd, tmp, 0)
	if err != nil {
		return fmt.Errorf("snapshot: writing %s: %w", filepath.Join(w.cfg.Dir, name), err)
	}
	return nil
}

// enforceLimits deletes the oldest snapshots beyond MaxFiles or MaxBytes.
func (w *Writer) enforceLimits() {
	for {
		w.mu.Lock()
		if len(w.files) == 0 || (len(w.files) <= w.cfg.MaxFiles && w.stats.Bytes <= w.cfg.MaxBytes) {
			w.mu.Unlock()
			return
		}
		old := w.files[0]
		w.files = w.files[1:]
		delete(w.known, old.name)
		w.stats.Files--
		w.stats.Bytes -= old.size
		w.stats.Deleted++
		w.mu.Unlock()
		if err := unix.Unlinkat(w.dfd, old.name, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("old snapshot not deleted", "file", old.name, "err", err)
		}
	}
}

package labels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clipd/clipd/internal/lifecycle"
	"github.com/clipd/clipd/internal/safefile"
	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the Watcher waits after the last change in a
// directory before reloading. Editors save in several steps (write a temp
// file, fsync, rename, chmod); waiting for quiet avoids loading half a save.
const DefaultDebounce = 100 * time.Millisecond

// DefaultPollInterval is how often watched paths are stat'ed besides
// inotify, as mediamtx polls its configuration every second.
const DefaultPollInterval = time.Second

// maxRetryWait bounds the wait between attempts at a set that failed for
// a reason other than its content: a failing encoder is tried again at
// growing intervals from PollInterval up to this.
const maxRetryWait = time.Minute

// MaxFileBytes bounds a labels file. ImageNet's 1,000 classes with all 80
// of CLIP's templates written out are about 4 MB.
const MaxFileBytes = 16 << 20

// EventKind says what happened to a labels file.
type EventKind int

const (
	// Loaded: a new set was parsed, embedded and swapped in (Event.Set).
	Loaded EventKind = iota + 1
	// Failed: the file changed but could not be used; the previous set stays.
	Failed
	// Removed: the file disappeared; the previous set stays.
	Removed
)

func (k EventKind) String() string {
	switch k {
	case Loaded:
		return "loaded"
	case Failed:
		return "failed"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports the outcome of a reload.
type Event struct {
	Kind EventKind
	// File is the path as given in WatcherConfig.Files; empty for errors of
	// the watch itself.
	File string
	// Line is the offending line for parse errors, else 0.
	Line int
	// Version is the version now in use for File.
	Version uint64
	// Set is the new set for Loaded events.
	Set *Set
	Err error
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Files are the labels files to load and watch.
	Files []string
	// Embedder computes label weights; it may be shared with other users
	// (e.g. classify requests with ad-hoc labels) to share the prompt cache.
	Embedder *Embedder
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
	// PollInterval is how often the files and their directories are also
	// checked with stat, the backstop for what inotify cannot see (bind
	// mounts, network filesystems) and for directories that were replaced
	// wholesale; DefaultPollInterval if zero.
	PollInterval time.Duration
	// OnEvent, if set, is called from the watcher goroutine after every
	// reload attempt. It should return quickly.
	OnEvent func(Event)
}

// Watcher keeps the current Set of each labels file, reloading it when the
// file changes. Readers call Current, which never blocks on a reload.
type Watcher struct {
	conf   WatcherConfig
	files  []*watchedFile
	byPath map[string]*watchedFile
	fsw    *fsnotify.Watcher
	// watched maps each directory under watch to the identity it had when
	// the watch was added: an inotify watch follows an inode, so a
	// directory deleted and recreated, or renamed over, needs a new one.
	watched map[string]fileID
	// fileDirs are the directories holding the files or their symlink
	// targets; events elsewhere (in the parents, watched so that a
	// directory's re-creation is seen) matter only when they name one.
	fileDirs map[string]bool

	reload chan struct{}
	// loop runs run; Close ends its context, which also stops an
	// embedding in progress.
	loop   *lifecycle.Loop
	closed sync.Once
}

// fileID tells whether a path still names the same file, and whether that
// file changed.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func statID(path string) (fileID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

// sameInode ignores the change times, which every write in a watched
// directory updates.
func (a fileID) sameInode(b fileID) bool { return a.dev == b.dev && a.ino == b.ino }

type watchedFile struct {
	path    string // as configured
	current atomic.Pointer[Set]
	// lastSeen is the content last used, or last refused for what it
	// says (a parse error), so that an event that did not change the
	// bytes (touch, chmod, a sibling file) neither bumps the version nor
	// repeats an error. Content that failed for another reason (the
	// encoder failed, memory ran out) is not recorded, so that it is
	// tried again.
	lastSeen []byte
	// retryAt is when that next try is due, after retryWait; zero when
	// there is none.
	retryAt   time.Time
	retryWait time.Duration
	// seen is the file's identity at the last read; a poll that finds
	// another reloads.
	seen    fileID
	removed bool
	// unreadable: the path names something that cannot be read as a
	// labels file (a FIFO, a device, a file over the limit). Its times may
	// change all the time (a device's do), so only a new inode or size
	// counts as a change.
	unreadable bool
}

// NewWatcher loads every file, failing if one cannot be used, and then
// watches them until Close. ctx bounds the first load (the embedding of a
// large set can take minutes); it is not kept.
func NewWatcher(ctx context.Context, conf WatcherConfig) (*Watcher, error) {
	if len(conf.Files) == 0 {
		return nil, errors.New("labels: no files to watch")
	}
	if conf.Embedder == nil {
		return nil, errors.New("labels: WatcherConfig.Embedder is nil")
	}
	if conf.Debounce <= 0 {
		conf.Debounce = DefaultDebounce
	}
	if conf.PollInterval <= 0 {
		conf.PollInterval = DefaultPollInterval
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("labels: starting file watch: %w", err)
	}
	w := &Watcher{
		conf:     conf,
		byPath:   make(map[string]*watchedFile),
		fsw:      fsw,
		watched:  make(map[string]fileID),
		fileDirs: make(map[string]bool),
		reload:   make(chan struct{}, 1),
	}
	for _, p := range conf.Files {
		if w.lookup(p) != nil {
			fsw.Close()
			return nil, fmt.Errorf("labels: file %s listed twice", p)
		}
		f := &watchedFile{path: p}
		w.files = append(w.files, f)
		w.byPath[filepath.Clean(p)] = f
		if abs, err := filepath.Abs(p); err == nil {
			w.byPath[abs] = f
		}
	}
	// Watch before the first read so that an edit made during startup is
	// not lost; the extra event just finds unchanged content.
	w.syncWatches()
	for _, f := range w.files {
		data, id, err := readFile(f.path)
		if err != nil {
			fsw.Close()
			return nil, err
		}
		set, err := w.build(ctx, f.path, data)
		if err != nil {
			fsw.Close()
			return nil, err
		}
		set.Version = 1
		f.lastSeen, f.seen = data, id
		f.current.Store(set)
	}
	w.publishLive()
	w.loop = lifecycle.Go(w.run)
	return w, nil
}

// readFile reads a labels file the way every reader of one must: never
// blocking on a FIFO, never following a path to a device, never reading
// more than MaxFileBytes.
func readFile(path string) ([]byte, fileID, error) {
	f, fi, err := safefile.Open(path)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("labels: %w", err)
	}
	defer f.Close()
	data, err := safefile.ReadAll(f, fi, MaxFileBytes)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("labels: %w", err)
	}
	var id fileID
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id = fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	}
	return data, id, nil
}

// Load reads and parses one labels file, for one-shot commands and
// `clipd check`; the daemon's files go through a Watcher.
func Load(path string) (*Set, error) {
	data, _, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(bytes.NewReader(data), path)
}

// Current returns the set in use for file (as given in the config, or its
// absolute path), or nil for a file that is not watched. Safe to call from
// any goroutine; the returned set must not be modified.
func (w *Watcher) Current(file string) *Set {
	if f := w.lookup(file); f != nil {
		return f.current.Load()
	}
	return nil
}

// Files lists the watched paths as configured.
func (w *Watcher) Files() []string {
	out := make([]string, len(w.files))
	for i, f := range w.files {
		out[i] = f.path
	}
	return out
}

// Reload asks for every file to be re-read now (e.g. on SIGHUP), as if it
// had changed: unchanged content gets a new version, and content that
// failed for another reason than what it says is tried again at once. It
// never blocks; calls while a reload is pending are one.
func (w *Watcher) Reload() {
	select {
	case w.reload <- struct{}{}:
	default:
	}
}

// Close stops watching and waits for a reload in progress to finish.
func (w *Watcher) Close() error {
	var err error
	w.closed.Do(func() {
		w.loop.Close()
		err = w.fsw.Close()
		w.conf.Embedder.setLive(w, nil)
	})
	return err
}

func (w *Watcher) lookup(file string) *watchedFile {
	if f := w.byPath[filepath.Clean(file)]; f != nil {
		return f
	}
	if abs, err := filepath.Abs(file); err == nil {
		return w.byPath[abs]
	}
	return nil
}

// syncWatches makes the inotify watches match the files' paths as they
// are now. Each file's directory is watched, and when the file is a
// symlink the directory of its final target too, so that both a swapped
// link (Kubernetes ConfigMap "..data") and an edit of the target are seen;
// watching directories rather than files is what makes rename-over saves
// visible, since a watch on the file would follow the old inode. The
// parents of those directories are watched as well, so that a directory
// deleted and recreated, or another renamed into its place, is seen and
// watched afresh. What cannot be watched now (a directory that does not
// exist yet) is retried at the next poll.
func (w *Watcher) syncWatches() {
	want := make(map[string]bool)
	fileDirs := make(map[string]bool)
	for _, f := range w.files {
		dirs := []string{filepath.Dir(f.path)}
		if target, err := filepath.EvalSymlinks(f.path); err == nil {
			dirs = append(dirs, filepath.Dir(target))
		}
		for _, d := range dirs {
			abs, err := filepath.Abs(d)
			if err != nil {
				continue
			}
			fileDirs[abs] = true
			want[abs] = true
			want[filepath.Dir(abs)] = true
		}
	}
	w.fileDirs = fileDirs
	for dir := range want {
		id, exists := statID(dir)
		old, watched := w.watched[dir]
		switch {
		case watched && exists && old.sameInode(id):
			continue
		case watched:
			// Gone or replaced: the kernel may already have dropped the
			// watch, so an error here says nothing.
			w.fsw.Remove(dir)
			delete(w.watched, dir)
		}
		if exists {
			if err := w.fsw.Add(dir); err == nil {
				w.watched[dir] = id
			}
		}
	}
	for dir := range w.watched {
		if !want[dir] {
			w.fsw.Remove(dir)
			delete(w.watched, dir)
		}
	}
}

// relevant says whether an event at path may concern a watched file.
func (w *Watcher) relevant(path string) bool {
	return w.fileDirs[filepath.Dir(path)] || w.fileDirs[path]
}

// changedOnDisk reports whether any file's identity differs from the one
// it had at its last read: the poll's test for a change inotify missed.
func (w *Watcher) changedOnDisk() bool {
	now := time.Now()
	for _, f := range w.files {
		if !f.retryAt.IsZero() && !now.Before(f.retryAt) {
			return true
		}
		id, exists := statID(f.path)
		switch {
		case exists == f.removed:
			return true
		case !exists:
		case f.unreadable:
			if !id.sameInode(f.seen) || id.size != f.seen.size {
				return true
			}
		case id != f.seen:
			return true
		}
	}
	return false
}

func (w *Watcher) build(ctx context.Context, path string, data []byte) (*Set, error) {
	set, err := Parse(bytes.NewReader(data), path)
	if err != nil {
		return nil, err
	}
	if err := w.conf.Embedder.Embed(ctx, set); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return set, nil
}

func (w *Watcher) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	poll := time.NewTicker(w.conf.PollInterval)
	defer poll.Stop()
	// pending: the debounce timer runs. Events restart it (the burst is
	// not over); a poll only starts it, or a poll interval shorter than the
	// debounce would postpone the reload forever.
	pending := false
	settle := func() {
		timer.Reset(w.conf.Debounce)
		pending = true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			// Any change in a watched directory may be ours: the file
			// itself, a temp file renamed over it, or a symlink component.
			// Reading all files after the burst is cheap and needs no
			// guessing about editors.
			if w.relevant(ev.Name) {
				settle()
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// Typically an inotify queue overflow: events were lost, so
			// look at everything again.
			w.emit(Event{Kind: Failed, Err: fmt.Errorf("labels: file watch: %w", err)})
			settle()
		case <-poll.C:
			w.syncWatches()
			if !pending && w.changedOnDisk() {
				settle()
			}
		case <-w.reload:
			w.reloadAll(ctx, true)
		case <-timer.C:
			pending = false
			w.syncWatches()
			w.reloadAll(ctx, false)
		}
	}
}

// publishLive tells the Embedder which sets this watcher serves, so that
// pruning keeps their prompts (and those of other watchers sharing it).
func (w *Watcher) publishLive() {
	sets := make([]*Set, len(w.files))
	for i, f := range w.files {
		sets[i] = f.current.Load()
	}
	w.conf.Embedder.setLive(w, sets)
}

func (w *Watcher) reloadAll(ctx context.Context, force bool) {
	changed := false
	for _, f := range w.files {
		if w.reloadFile(ctx, f, force) {
			changed = true
		}
	}
	if changed {
		w.publishLive()
	}
}

// reloadFile reports whether a new set was swapped in.
func (w *Watcher) reloadFile(ctx context.Context, f *watchedFile, force bool) bool {
	old := f.current.Load()
	data, id, err := readFile(f.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			f.retryAt, f.retryWait = time.Time{}, 0
			if !f.removed {
				f.removed, f.unreadable = true, false
				f.lastSeen, f.seen = nil, fileID{}
				w.emit(Event{Kind: Removed, File: f.path, Version: old.Version,
					Err: fmt.Errorf("%s: removed", f.path)})
			}
			return false
		}
		// Remember what was seen, so that the poll does not report the
		// same unreadable file every second.
		f.removed, f.unreadable = false, true
		f.lastSeen, f.seen = nil, statIDOrZero(f.path)
		f.retryAt, f.retryWait = time.Time{}, 0
		w.emit(Event{Kind: Failed, File: f.path, Version: old.Version, Err: err})
		return false
	}
	f.removed, f.unreadable = false, false
	f.seen = id
	if !force && f.lastSeen != nil && bytes.Equal(data, f.lastSeen) {
		// Also when a retry was due: the file is back to what is in use.
		f.retryAt, f.retryWait = time.Time{}, 0
		return false
	}
	set, err := w.build(ctx, f.path, data)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		ev := Event{Kind: Failed, File: f.path, Version: old.Version, Err: err}
		var pe *ParseError
		if errors.As(err, &pe) {
			// Reading the same bytes again would say the same.
			ev.Line = pe.Line
			f.lastSeen, f.retryAt, f.retryWait = data, time.Time{}, 0
		} else {
			f.retryWait = min(max(2*f.retryWait, w.conf.PollInterval), maxRetryWait)
			f.retryAt = time.Now().Add(f.retryWait)
		}
		w.emit(ev)
		return false
	}
	f.lastSeen, f.retryAt, f.retryWait = data, time.Time{}, 0
	set.Version = old.Version + 1
	f.current.Store(set)
	w.emit(Event{Kind: Loaded, File: f.path, Version: set.Version, Set: set})
	return true
}

func statIDOrZero(path string) fileID {
	id, _ := statID(path)
	return id
}

func (w *Watcher) emit(ev Event) {
	if w.conf.OnEvent != nil {
		w.conf.OnEvent(ev)
	}
}

package labels

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the Watcher waits after the last change in a
// directory before reloading. Editors save in several steps (write a temp
// file, fsync, rename, chmod); waiting for quiet avoids loading half a save.
const DefaultDebounce = 100 * time.Millisecond

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
	// OnEvent, if set, is called from the watcher goroutine after every
	// reload attempt. It should return quickly.
	OnEvent func(Event)
}

// Watcher keeps the current Set of each labels file, reloading it when the
// file changes. Readers call Current, which never blocks on a reload.
type Watcher struct {
	conf    WatcherConfig
	files   []*watchedFile
	byPath  map[string]*watchedFile
	fsw     *fsnotify.Watcher
	watched map[string]bool // directories under watch

	reload chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

type watchedFile struct {
	path    string // as configured
	current atomic.Pointer[Set]
	// lastSeen is the content of the last read, good or bad, so that an
	// event that did not change the bytes (touch, chmod, a sibling file)
	// neither bumps the version nor repeats an error.
	lastSeen []byte
	removed  bool
}

// NewWatcher loads every file, failing if one cannot be used, and then
// watches them until Close.
func NewWatcher(conf WatcherConfig) (*Watcher, error) {
	if len(conf.Files) == 0 {
		return nil, errors.New("labels: no files to watch")
	}
	if conf.Embedder == nil {
		return nil, errors.New("labels: WatcherConfig.Embedder is nil")
	}
	if conf.Debounce <= 0 {
		conf.Debounce = DefaultDebounce
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("labels: starting file watch: %w", err)
	}
	w := &Watcher{
		conf:    conf,
		byPath:  make(map[string]*watchedFile),
		fsw:     fsw,
		watched: make(map[string]bool),
		reload:  make(chan struct{}, 1),
		done:    make(chan struct{}),
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
	for _, f := range w.files {
		if err := w.watchDirsOf(f.path); err != nil {
			fsw.Close()
			return nil, err
		}
	}
	for _, f := range w.files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			fsw.Close()
			return nil, fmt.Errorf("labels: %w", err)
		}
		set, err := w.build(f.path, data)
		if err != nil {
			fsw.Close()
			return nil, err
		}
		set.Version = 1
		f.lastSeen = data
		f.current.Store(set)
	}
	w.publishLive()
	w.wg.Add(1)
	go w.run()
	return w, nil
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
// had changed.
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
		close(w.done)
		w.wg.Wait()
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

// watchDirsOf watches the directory holding path and, when path is a
// symlink, the directory holding its final target, so that both a swapped
// link (Kubernetes ConfigMap "..data") and an edit of the target are seen.
// Watching directories rather than files is what makes rename-over saves
// visible: a watch on the file would follow the old inode.
func (w *Watcher) watchDirsOf(path string) error {
	dirs := []string{filepath.Dir(path)}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		dirs = append(dirs, filepath.Dir(target))
	}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("labels: %s: %w", d, err)
		}
		if w.watched[abs] {
			continue
		}
		if err := w.fsw.Add(abs); err != nil {
			return fmt.Errorf("labels: watching directory %s of %s: %w", abs, path, err)
		}
		w.watched[abs] = true
	}
	return nil
}

func (w *Watcher) build(path string, data []byte) (*Set, error) {
	set, err := Parse(bytes.NewReader(data), path)
	if err != nil {
		return nil, err
	}
	if err := w.conf.Embedder.Embed(set); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return set, nil
}

func (w *Watcher) run() {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-w.done:
			timer.Stop()
			return
		case _, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			// Any change in a watched directory may be ours: the file
			// itself, a temp file renamed over it, or a symlink component.
			// Reading all files after the burst is cheap and needs no
			// guessing about editors.
			timer.Reset(w.conf.Debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.emit(Event{Kind: Failed, Err: fmt.Errorf("labels: file watch: %w", err)})
			timer.Reset(w.conf.Debounce)
		case <-w.reload:
			w.reloadAll(true)
		case <-timer.C:
			w.reloadAll(false)
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

func (w *Watcher) reloadAll(force bool) {
	changed := false
	for _, f := range w.files {
		if w.reloadFile(f, force) {
			changed = true
		}
	}
	if changed {
		w.publishLive()
	}
}

// reloadFile reports whether a new set was swapped in.
func (w *Watcher) reloadFile(f *watchedFile, force bool) bool {
	old := f.current.Load()
	data, err := os.ReadFile(f.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !f.removed {
				f.removed = true
				f.lastSeen = nil
				w.emit(Event{Kind: Removed, File: f.path, Version: old.Version,
					Err: fmt.Errorf("%s: removed; keeping version %d", f.path, old.Version)})
			}
			return false
		}
		f.lastSeen = nil
		w.emit(Event{Kind: Failed, File: f.path, Version: old.Version, Err: fmt.Errorf("labels: %w", err)})
		return false
	}
	f.removed = false
	if !force && f.lastSeen != nil && bytes.Equal(data, f.lastSeen) {
		return false
	}
	f.lastSeen = data
	// A symlink may now point somewhere new; keep following its target.
	if err := w.watchDirsOf(f.path); err != nil {
		w.emit(Event{Kind: Failed, File: f.path, Version: old.Version, Err: err})
	}
	set, err := w.build(f.path, data)
	if err != nil {
		ev := Event{Kind: Failed, File: f.path, Version: old.Version, Err: err}
		var pe *ParseError
		if errors.As(err, &pe) {
			ev.Line = pe.Line
		}
		w.emit(ev)
		return false
	}
	set.Version = old.Version + 1
	f.current.Store(set)
	w.emit(Event{Kind: Loaded, File: f.path, Version: set.Version, Set: set})
	return true
}

func (w *Watcher) emit(ev Event) {
	if w.conf.OnEvent != nil {
		w.conf.OnEvent(ev)
	}
}

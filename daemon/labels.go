package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/server"
)

// labelsHub watches each labels file once, however many cameras and
// regions use it, so that it is parsed, watched and embedded once, and
// keeps a file's watcher (and its version count) alive across a camera's
// restart: the replacement acquires its files before the old camera
// releases them.
type labelsHub struct {
	embedder *labels.Embedder
	log      *slog.Logger
	publish  func(server.Event)
	// onLoaded, if set, runs after a file's new set was announced.
	onLoaded func()
	metrics  *metrics.Metrics // counts each camera's label reloads

	mu    sync.Mutex
	files map[string]*labelsFile
}

// labelsFile is one watched file and the targets that use it.
type labelsFile struct {
	path    string
	watcher *labels.Watcher
	// users counts acquisitions per target, for the events each target's
	// clients are sent.
	users map[targetName]int
	// failing says why the file as it is on disk now is not in use (the
	// previous version is); "" when the one in use is the one on disk.
	failing string
}

// targetName is a camera's whole frame (region "") or one of its regions.
type targetName struct{ camera, region string }

func (t targetName) String() string {
	if t.region == "" {
		return t.camera
	}
	return t.camera + "/" + t.region
}

func newLabelsHub(e *labels.Embedder, log *slog.Logger, publish func(server.Event)) *labelsHub {
	return &labelsHub{embedder: e, log: log, publish: publish, files: make(map[string]*labelsFile)}
}

// acquire returns the watched file at path for user, loading and
// embedding it first if nobody watches it yet (bounded by ctx).
func (h *labelsHub) acquire(ctx context.Context, path string, user targetName) (*labelsFile, error) {
	h.mu.Lock()
	if f := h.files[path]; f != nil {
		f.users[user]++
		h.mu.Unlock()
		return f, nil
	}
	h.mu.Unlock()

	// Loading may take minutes (embedding); nobody else waits for it.
	f := &labelsFile{path: path, users: map[targetName]int{}}
	w, err := labels.NewWatcher(ctx, labels.WatcherConfig{
		Files:    []string{path},
		Embedder: h.embedder,
		OnEvent:  func(ev labels.Event) { h.event(f, ev) },
	})
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if other := h.files[path]; other != nil {
		// Loaded meanwhile for another user: keep that one.
		go w.Close()
		other.users[user]++
		return other, nil
	}
	f.watcher = w
	f.users[user]++
	h.files[path] = f
	return f, nil
}

// release drops user's hold on the file; the last one stops watching it.
func (h *labelsHub) release(f *labelsFile, user targetName) {
	h.mu.Lock()
	f.users[user]--
	if f.users[user] <= 0 {
		delete(f.users, user)
	}
	last := len(f.users) == 0
	if last {
		delete(h.files, f.path)
	}
	h.mu.Unlock()
	if last {
		f.watcher.Close()
	}
}

// retryFailed has every watched file whose last load failed read again
// (on SIGHUP): a failure the file does not show, such as an encoder
// error, is retried without waiting for an edit. Files in use as they are
// on disk are left alone: a reload would give them a new version.
func (h *labelsHub) retryFailed() {
	h.mu.Lock()
	var ws []*labels.Watcher
	for _, f := range h.files {
		if f.failing != "" {
			ws = append(ws, f.watcher)
		}
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.Reload()
	}
}

// lastError says why the file on disk is not the set in use, or "".
func (h *labelsHub) lastError(f *labelsFile) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f.failing
}

// current is the set in use for the file.
func (f *labelsFile) current() *labels.Set { return f.watcher.Current(f.path) }

// event tells each target using the file what happened to it.
func (h *labelsHub) event(f *labelsFile, ev labels.Event) {
	h.mu.Lock()
	users := make([]targetName, 0, len(f.users))
	for u := range f.users {
		users = append(users, u)
	}
	if ev.File != "" { // not a problem of the watch itself
		switch {
		case ev.Kind == labels.Loaded:
			f.failing = ""
		case ev.Err != nil:
			f.failing = ev.Err.Error()
		default:
			f.failing = "labels file " + ev.Kind.String()
		}
	}
	h.mu.Unlock()
	slices.SortFunc(users, func(a, b targetName) int { return cmp.Compare(a.String(), b.String()) })
	if h.metrics != nil {
		counted := map[string]bool{}
		for _, u := range users {
			if !counted[u.camera] {
				counted[u.camera] = true
				h.metrics.LabelsEvent(u.camera, ev.Kind)
			}
		}
	}
	switch ev.Kind {
	case labels.Loaded:
		h.log.Info("labels loaded", "file", ev.File, "version", ev.Version, "labels", len(ev.Set.Labels), "targets", len(users))
		for _, u := range users {
			h.publish(&server.LabelsUpdate{Camera: u.camera, Region: u.region, File: ev.File, Version: ev.Version, Labels: ev.Set.Names()})
		}
		if h.onLoaded != nil {
			h.onLoaded()
		}
	default:
		msg := "labels file " + ev.Kind.String()
		if ev.Err != nil {
			msg = ev.Err.Error()
		}
		if ev.File == "" {
			// The watch itself failed (an inotify queue overflow): events
			// may have been lost, so the watcher reads the file again. No
			// version is concerned; Event.Version is 0.
			h.log.Warn("labels file watch failed; reading the file again", "file", f.path, "err", msg)
			msg += "; reading " + f.path + " again (the labels in use stay)"
		} else {
			h.log.Warn("labels not reloaded; keeping the previous set", "file", ev.File, "line", ev.Line, "err", msg)
			msg += fmt.Sprintf(" (keeping labels version %d)", ev.Version)
		}
		for _, u := range users {
			h.publish(&server.ErrorReport{Camera: u.camera, Region: u.region, File: ev.File, Line: ev.Line, Message: msg})
		}
	}
}

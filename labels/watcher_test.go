package labels

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// eventWait bounds how long a test waits for fsnotify plus debounce; it is
// a deadlock guard, not a performance assertion.
const eventWait = 10 * time.Second

type harness struct {
	t        *testing.T
	debounce time.Duration
	dir      string
	path     string
	enc      *hashEncoder
	w        *Watcher
	events   chan Event
}

func newHarness(t *testing.T, content string) *harness {
	t.Helper()
	return newHarnessDebounce(t, content, DefaultDebounce)
}

// newHarnessDebounce is for tests whose file operations must all fall in
// one debounce window even on a loaded machine.
func newHarnessDebounce(t *testing.T, content string, debounce time.Duration) *harness {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "cams.labels")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return startHarness(t, dir, path, debounce)
}

func startHarness(t *testing.T, dir, path string, debounce time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, debounce: debounce, dir: dir, path: path, enc: &hashEncoder{dim: 8}, events: make(chan Event, 1000)}
	w, err := NewWatcher(context.Background(), WatcherConfig{
		Files:    []string{path},
		Debounce: debounce,
		// Polls far more often than the default, so that every test also
		// checks that the poll does not add loads or repeat errors.
		PollInterval: 50 * time.Millisecond,
		Embedder:     NewEmbedder(h.enc),
		OnEvent:      func(ev Event) { h.events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func (h *harness) next() Event {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(eventWait):
		h.t.Fatalf("no watcher event within %v", eventWait)
		return Event{}
	}
}

// quiet asserts that nothing more is reported once a few debounce periods
// have passed.
func (h *harness) quiet() {
	h.t.Helper()
	select {
	case ev := <-h.events:
		h.t.Fatalf("unexpected event %v %s v%d: %v", ev.Kind, ev.File, ev.Version, ev.Err)
	case <-time.After(5 * h.debounce):
	}
}

func (h *harness) names() []string { return h.w.Current(h.path).Names() }

// replace saves like most editors: write a temp file, rename it over.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherInitialLoad(t *testing.T) {
	h := newHarness(t, "dog\ncat\n")
	set := h.w.Current(h.path)
	if set.Version != 1 || !set.Embedded() || !reflect.DeepEqual(set.Names(), []string{"dog", "cat"}) {
		t.Errorf("initial set: version %d, embedded %v, names %q", set.Version, set.Embedded(), set.Names())
	}
	if h.w.Current("elsewhere.labels") != nil {
		t.Error("Current returned a set for an unwatched file")
	}
}

func TestNewWatcherRejectsBrokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.labels")
	os.WriteFile(path, []byte("dog\ndog\n"), 0o644)
	_, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, Embedder: NewEmbedder(&hashEncoder{dim: 4})})
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("err = %v, want one naming %s:2", err, path)
	}
}

func TestWatcherRenameSwap(t *testing.T) {
	h := newHarness(t, "dog\ncat\n")
	replace(t, h.path, "dog\ncat\nbird\n")
	ev := h.next()
	if ev.Kind != Loaded || ev.Version != 2 || ev.File != h.path {
		t.Fatalf("event = %+v, want loaded v2", ev)
	}
	if got := h.names(); !reflect.DeepEqual(got, []string{"dog", "cat", "bird"}) {
		t.Errorf("names = %q", got)
	}
	h.quiet()
}

func TestWatcherInPlaceWrite(t *testing.T) {
	h := newHarness(t, "dog\n")
	if err := os.WriteFile(h.path, []byte("horse\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 {
		t.Fatalf("event = %+v", ev)
	}
	if got := h.names(); !reflect.DeepEqual(got, []string{"horse"}) {
		t.Errorf("names = %q", got)
	}
}

func TestWatcherBrokenFileKeepsOldSet(t *testing.T) {
	h := newHarness(t, "dog\ncat\n")
	replace(t, h.path, "dog\ncat\ntemplate: no placeholder\n")
	ev := h.next()
	if ev.Kind != Failed || ev.Line != 3 || ev.Version != 1 || !strings.Contains(ev.Err.Error(), h.path+":3:") {
		t.Fatalf("event = %+v, want failed at line 3 keeping v1", ev)
	}
	if set := h.w.Current(h.path); set.Version != 1 || !reflect.DeepEqual(set.Names(), []string{"dog", "cat"}) {
		t.Errorf("after broken edit: v%d %q", set.Version, set.Names())
	}
	// Touching the broken file without changing it must not repeat the error.
	now := time.Now()
	os.Chtimes(h.path, now, now)
	h.quiet()

	replace(t, h.path, "dog\ncat\nfox\n")
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 {
		t.Fatalf("after fix: %+v", ev)
	}
}

func TestWatcherRemovalKeepsOldSet(t *testing.T) {
	h := newHarness(t, "dog\n")
	if err := os.Remove(h.path); err != nil {
		t.Fatal(err)
	}
	ev := h.next()
	if ev.Kind != Removed || ev.Version != 1 || ev.Err == nil {
		t.Fatalf("event = %+v, want removed keeping v1", ev)
	}
	if set := h.w.Current(h.path); set.Version != 1 || set.Names()[0] != "dog" {
		t.Errorf("after removal: v%d %q", set.Version, set.Names())
	}
	replace(t, h.path, "cat\n")
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 || ev.Set.Names()[0] != "cat" {
		t.Fatalf("after re-creation: %+v", ev)
	}
}

// Kubernetes mounts ConfigMaps as name -> ..data/name, ..data -> ..<stamp>,
// and updates by renaming a new ..data symlink over the old one.
func TestWatcherSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(stamp, content string) {
		os.Mkdir(filepath.Join(dir, stamp), 0o755)
		if err := os.WriteFile(filepath.Join(dir, stamp, "cams.labels"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("..v1", "dog\n")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cams.labels")
	if err := os.Symlink(filepath.Join("..data", "cams.labels"), path); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, dir, path, DefaultDebounce)

	mk("..v2", "dog\nowl\n")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "..v1"))
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 {
		t.Fatalf("event = %+v", ev)
	}
	if got := h.names(); !reflect.DeepEqual(got, []string{"dog", "owl"}) {
		t.Errorf("names = %q", got)
	}
	h.quiet()
}

// A symlink into another directory: editing the target must be seen even
// though nothing changes in the link's own directory.
func TestWatcherFollowsSymlinkTargetDirectory(t *testing.T) {
	linkDir, targetDir := t.TempDir(), t.TempDir()
	target := filepath.Join(targetDir, "real.labels")
	os.WriteFile(target, []byte("dog\n"), 0o644)
	path := filepath.Join(linkDir, "cams.labels")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, linkDir, path, DefaultDebounce)
	replace(t, target, "dog\nemu\n")
	if ev := h.next(); ev.Kind != Loaded || !reflect.DeepEqual(ev.Set.Names(), []string{"dog", "emu"}) {
		t.Fatalf("event = %+v", ev)
	}
}

// vim with backupcopy=no renames the file away, writes a new one and
// deletes the backup; the moment without a file must not count as removal.
func TestWatcherVimSave(t *testing.T) {
	h := newHarnessDebounce(t, "dog\n", time.Second)
	backup := h.path + "~"
	if err := os.Rename(h.path, backup); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.path, []byte("dog\nyak\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(backup)
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 {
		t.Fatalf("event = %+v, want one loaded v2", ev)
	}
	h.quiet()
}

func TestWatcherDebounceCoalescesBurst(t *testing.T) {
	h := newHarnessDebounce(t, "l0\n", time.Second)
	for i := 1; i <= 20; i++ {
		replace(t, h.path, fmt.Sprintf("l%d\n", i))
	}
	ev := h.next()
	if ev.Kind != Loaded || ev.Version != 2 || ev.Set.Names()[0] != "l20" {
		t.Fatalf("event = %+v, want a single load of the last content", ev)
	}
	h.quiet()
}

func TestWatcherSiblingFileDoesNotReload(t *testing.T) {
	h := newHarness(t, "dog\n")
	os.WriteFile(filepath.Join(h.dir, "notes.txt"), []byte("x"), 0o644)
	h.quiet()
	if v := h.w.Current(h.path).Version; v != 1 {
		t.Errorf("version = %d after a sibling changed, want 1", v)
	}
}

func TestWatcherEncodesOnlyNewPrompts(t *testing.T) {
	h := newHarness(t, "template: a photo of a {}.\ntemplate: a sketch of a {}.\ndog\ncat\n")
	replace(t, h.path, "template: a photo of a {}.\ntemplate: a sketch of a {}.\ndog\ncat\nbird\n")
	if ev := h.next(); ev.Kind != Loaded {
		t.Fatalf("event = %+v", ev)
	}
	calls, encoded := h.enc.stats()
	want := []string{"a photo of a dog.", "a sketch of a dog.", "a photo of a cat.", "a sketch of a cat.", "a photo of a bird.", "a sketch of a bird."}
	if calls != 2 || !reflect.DeepEqual(encoded, want) {
		t.Errorf("%d encoder calls encoded %q, want 2 calls encoding %q", calls, encoded, want)
	}
}

func TestWatcherReloadForcesNewVersion(t *testing.T) {
	h := newHarness(t, "dog\n")
	h.w.Reload()
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 {
		t.Fatalf("event = %+v", ev)
	}
}

// Readers must always see a complete, embedded set whose version never goes
// backwards, while reloads swap sets underneath them (run with -race).
func TestWatcherConcurrentReaders(t *testing.T) {
	h := newHarness(t, "a0\n")
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for !stop.Load() {
				set := h.w.Current(h.path)
				if set.Version < last {
					errs <- fmt.Sprintf("version went back from %d to %d", last, set.Version)
					return
				}
				last = set.Version
				if !set.Embedded() || len(set.Labels) != int(set.Version) {
					errs <- fmt.Sprintf("v%d has %d labels, embedded %v", set.Version, len(set.Labels), set.Embedded())
					return
				}
				for _, l := range set.Labels {
					_ = l.Weight[0] * l.Weight[len(l.Weight)-1]
				}
			}
		}()
	}
	// Version n has n labels, so readers can check consistency.
	content := "a0\n"
	for v := 2; v <= 8; v++ {
		content += fmt.Sprintf("a%d\n", v-1)
		replace(t, h.path, content)
		if ev := h.next(); ev.Kind != Loaded || ev.Version != uint64(v) {
			t.Fatalf("event = %+v, want v%d", ev, v)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func BenchmarkCurrent(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "x.labels")
	os.WriteFile(path, []byte("dog\n"), 0o644)
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, Embedder: NewEmbedder(&hashEncoder{dim: 8})})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if w.Current(path) == nil {
				b.Fatal("nil set")
			}
		}
	})
}

// Cameras each have a Watcher sharing one Embedder: a reload of one file
// must not evict the prompts another watcher serves.
func TestWatchersSharingEmbedderKeepEachOthersPrompts(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.labels"), filepath.Join(dir, "b.labels")
	os.WriteFile(a, []byte("dog\n"), 0o644)
	os.WriteFile(b, []byte("cat\n"), 0o644)
	enc := &hashEncoder{dim: 8}
	e := NewEmbedder(enc)
	events := make(chan Event, 10)
	wa, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{a}, Embedder: e, OnEvent: func(ev Event) { events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	wb, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{b}, Embedder: e})
	if err != nil {
		t.Fatal(err)
	}
	replace(t, a, "dog\nemu\n")
	select {
	case ev := <-events:
		if ev.Kind != Loaded {
			t.Fatalf("event = %+v", ev)
		}
	case <-time.After(eventWait):
		t.Fatal("no reload")
	}
	if got := e.Cached(); got != 3 {
		t.Errorf("cache holds %d prompts, want 3 (dog, emu and the other watcher's cat)", got)
	}
	wb.Close()
	e.Retain()
	if got := e.Cached(); got != 2 {
		t.Errorf("after the other watcher closed, cache holds %d prompts, want 2", got)
	}
}

// newNestedHarness puts the labels file in a directory of its own, so that
// tests can delete or replace that directory.
func newNestedHarness(t *testing.T, content string) (h *harness, labelsDir string) {
	t.Helper()
	root := t.TempDir()
	labelsDir = filepath.Join(root, "labels")
	if err := os.Mkdir(labelsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(labelsDir, "cams.labels")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return startHarness(t, labelsDir, path, DefaultDebounce), labelsDir
}

// expectLoaded skips the Removed and Failed events that a replacement may
// pass through and returns the next load.
func (h *harness) expectLoaded(version uint64, names ...string) {
	h.t.Helper()
	for {
		ev := h.next()
		if ev.Kind != Loaded {
			continue
		}
		if ev.Version != version || !reflect.DeepEqual(ev.Set.Names(), names) {
			h.t.Fatalf("loaded v%d %q, want v%d %q", ev.Version, ev.Set.Names(), version, names)
		}
		return
	}
}

// `rm -rf labels; mkdir labels; ...` ends the inotify watch of the old
// directory; reloading must go on for every later edit.
func TestWatcherDirectoryDeletedAndRecreated(t *testing.T) {
	h, dir := newNestedHarness(t, "dog\n")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if ev := h.next(); ev.Kind != Removed {
		t.Fatalf("after rm -rf: %+v, want removed", ev)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFileT(t, h.path, "cat\n")
	h.expectLoaded(2, "cat")
	for i, name := range []string{"owl", "yak", "emu"} {
		replace(t, h.path, name+"\n")
		h.expectLoaded(uint64(3+i), name)
	}
}

// A new directory renamed into place (`mv labels labels.old; mv new labels`)
// leaves the old watch on the directory that moved away.
func TestWatcherDirectoryRenamedOver(t *testing.T) {
	h, dir := newNestedHarness(t, "dog\n")
	next := dir + ".new"
	if err := os.Mkdir(next, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFileT(t, filepath.Join(next, "cams.labels"), "cat\n")
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, dir); err != nil {
		t.Fatal(err)
	}
	h.expectLoaded(2, "cat")
	// Edits in the directory that moved away are no longer ours.
	writeFileT(t, filepath.Join(dir+".old", "cams.labels"), "bee\n")
	replace(t, h.path, "owl\n")
	h.expectLoaded(3, "owl")
	replace(t, h.path, "yak\n")
	h.expectLoaded(4, "yak")
}

// A write inotify does not report, as on a network filesystem changed by
// another machine: here, through a hard link in an unwatched directory,
// which notifies that directory and not ours. The poll still finds it.
func TestWatcherPollFindsChangesInotifyMisses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cams.labels")
	writeFileT(t, path, "dog\n")
	elsewhere := filepath.Join(t.TempDir(), "link")
	if err := os.Link(path, elsewhere); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, debounce: DefaultDebounce, dir: dir, path: path, enc: &hashEncoder{dim: 8}, events: make(chan Event, 100)}
	w, err := NewWatcher(context.Background(), WatcherConfig{
		Files: []string{path}, Embedder: NewEmbedder(h.enc), PollInterval: 200 * time.Millisecond,
		OnEvent: func(ev Event) { h.events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	h.w = w
	f, err := os.OpenFile(elsewhere, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("dog\ncat\n")
	f.Close()
	h.expectLoaded(2, "dog", "cat")
}

// A labels path that turns into a FIFO, or a symlink to /dev/zero or
// /dev/urandom, is refused at once (no blocking open, no unbounded read),
// the last good set stays, Close returns promptly, and a real file later
// loads again.
func TestWatcherRefusesFIFOsAndDevices(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"dev-zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"dev-urandom", func(p string) error { return os.Symlink("/dev/urandom", p) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "dog\n")
			tmp := filepath.Join(h.dir, "swap")
			if err := tc.make(tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, h.path); err != nil && tc.name != "directory" {
				t.Fatal(err)
			} else if err != nil {
				os.Remove(h.path)
				if err := os.Rename(tmp, h.path); err != nil {
					t.Fatal(err)
				}
			}
			var ev Event
			for ev = h.next(); ev.Kind == Removed; ev = h.next() {
			}
			if ev.Kind != Failed || !strings.Contains(ev.Err.Error(), "not a regular file") || ev.Version != 1 {
				t.Fatalf("event = %v %v (v%d), want failed: not a regular file, keeping v1", ev.Kind, ev.Err, ev.Version)
			}
			if got := h.names(); !reflect.DeepEqual(got, []string{"dog"}) {
				t.Fatalf("names = %q, want the last good set", got)
			}
			// The poll must not report the same unreadable path again and again.
			h.quiet()
			os.RemoveAll(h.path)
			replace(t, h.path, "cat\n")
			h.expectLoaded(2, "cat")
		})
	}
}

func TestWatcherRefusesOversizedFile(t *testing.T) {
	h := newHarness(t, "dog\n")
	big := strings.Repeat("a label\n", MaxFileBytes/8+1)
	replace(t, h.path, big)
	ev := h.next()
	if ev.Kind != Failed || !strings.Contains(ev.Err.Error(), "file too large") {
		t.Fatalf("event = %v %v, want failed: too large", ev.Kind, ev.Err)
	}
}

func TestLoadRefusesWhatIsNotALabelsFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o644)
	nul := filepath.Join(dir, "nul.labels")
	writeFileT(t, nul, strings.Repeat("\x00", 100))
	for path, want := range map[string]string{
		fifo:        "not a regular file (a FIFO)",
		"/dev/zero": "not a regular file (a character device)",
		nul:         nul + ":1: column 1: control character U+0000",
	} {
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v, want %q", path, err, want)
		}
	}
}

func writeFileT(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stallingEncoder is a text encoder that never finishes a batch until its
// context ends, like a CPU encoding thousands of prompts.
type stallingEncoder struct{ started chan struct{} }

func (s stallingEncoder) LogitScale() float32 { return 100 }

func (s stallingEncoder) EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error) {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// Stopping must never wait for label embedding: NewWatcher gives up when
// its context ends, and Close ends a reload's embedding.
func TestWatcherEmbeddingStopsWhenAsked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cams.labels")
	writeFileT(t, path, "dog\n")
	enc := stallingEncoder{started: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := NewWatcher(ctx, WatcherConfig{Files: []string{path}, Embedder: NewEmbedder(enc)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NewWatcher with a stalled encoder: %v, want the context's deadline", err)
	}

	// A watcher whose first set is embedded, then a reload that stalls.
	mixed := &switchEncoder{fast: &hashEncoder{dim: 4}, slow: enc}
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, Embedder: NewEmbedder(mixed)})
	if err != nil {
		t.Fatal(err)
	}
	mixed.stall.Store(true)
	replace(t, path, "cat\n")
	select {
	case <-enc.started:
	case <-time.After(eventWait):
		t.Fatal("the reload never started encoding")
	}
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	select {
	case <-closed:
	case <-time.After(eventWait):
		t.Fatal("Close waited for a stalled embedding")
	}
}

type switchEncoder struct {
	fast  PromptEncoder
	slow  PromptEncoder
	stall atomic.Bool
}

func (s *switchEncoder) LogitScale() float32 { return 100 }

func (s *switchEncoder) EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error) {
	if s.stall.Load() {
		return s.slow.EncodePrompts(ctx, prompts)
	}
	return s.fast.EncodePrompts(ctx, prompts)
}

// flakyEncoder fails while fail is set, and for its next failures calls,
// like a GPU out of memory: nothing is wrong with the prompts.
type flakyEncoder struct {
	hashEncoder
	fail     atomic.Bool
	failures atomic.Int32
}

func (f *flakyEncoder) EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error) {
	if f.fail.Load() || f.failures.Add(-1) >= 0 {
		return nil, errors.New("CUDA out of memory")
	}
	return f.hashEncoder.EncodePrompts(ctx, prompts)
}

func startFlaky(t *testing.T, poll time.Duration) (*harness, *flakyEncoder) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cams.labels")
	writeFileT(t, path, "dog\n")
	enc := &flakyEncoder{hashEncoder: hashEncoder{dim: 8}}
	h := &harness{t: t, debounce: DefaultDebounce, path: path, events: make(chan Event, 100)}
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, PollInterval: poll,
		Embedder: NewEmbedder(enc), OnEvent: func(ev Event) { h.events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	h.w = w
	return h, enc
}

// An edit that failed for a reason other than its content is tried again
// at the next poll, without another edit; one that does not parse is not.
func TestWatcherRetriesWhatFailedForAnotherReason(t *testing.T) {
	h, enc := startFlaky(t, 50*time.Millisecond)
	enc.failures.Store(2)
	replace(t, h.path, "dog\ncat\n")
	for i := range 2 {
		if ev := h.next(); ev.Kind != Failed || ev.Version != 1 || ev.Line != 0 || !strings.Contains(ev.Err.Error(), "CUDA out of memory") {
			t.Fatalf("attempt %d: %+v, want the encoder's failure", i+1, ev)
		}
	}
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 || !reflect.DeepEqual(ev.Set.Names(), []string{"dog", "cat"}) {
		t.Fatalf("the retry: %+v, want v2 with cat", ev)
	}
	h.quiet()

	// What does not parse stays refused until it changes.
	replace(t, h.path, "dog\ndog\n")
	if ev := h.next(); ev.Kind != Failed || ev.Line != 2 {
		t.Fatalf("a duplicate label: %+v", ev)
	}
	h.quiet()
}

// SIGHUP's Reload tries again at once what failed, whenever the poll
// would.
func TestWatcherReloadRetriesAFailure(t *testing.T) {
	h, enc := startFlaky(t, time.Hour)
	enc.fail.Store(true)
	replace(t, h.path, "dog\nfox\n")
	if ev := h.next(); ev.Kind != Failed {
		t.Fatalf("%+v, want the encoder's failure", ev)
	}
	enc.fail.Store(false)
	h.w.Reload()
	if ev := h.next(); ev.Kind != Loaded || ev.Version != 2 || !reflect.DeepEqual(ev.Set.Names(), []string{"dog", "fox"}) {
		t.Fatalf("after Reload: %+v, want v2 with fox", ev)
	}
}

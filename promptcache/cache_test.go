package promptcache

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/syncbuf"
)

// logBuffer collects log lines for assertions.
type logBuffer struct{ syncbuf.Buffer }

func (b *logBuffer) lines() []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// clock is a settable time for tests of ages.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	state string
	log   *logBuffer
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	return &fixture{state: t.TempDir(), log: &logBuffer{}, clock: &clock{t: time.Unix(1_750_000_000, 0)}}
}

func (f *fixture) open(t *testing.T, key ModelKey, dim int, max int64) *Cache {
	t.Helper()
	c, err := Open(Config{StateDir: f.state, Model: key, Dim: dim, MaxBytes: max,
		Log: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	c.now = f.clock.now
	return c
}

func prompts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

func vecs(ps []string, dim int) [][]float32 {
	out := make([][]float32, len(ps))
	for i, p := range ps {
		out[i] = unitVec(p, dim)
	}
	return out
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkAll asserts that Get finds every prompt with its exact embedding.
func checkAll(t *testing.T, c *Cache, ps []string, dim int) {
	t.Helper()
	got := c.Get(ps)
	for i, p := range ps {
		if got[i] == nil {
			t.Fatalf("%q not found", p)
		}
		if !sameBits(got[i], unitVec(p, dim)) {
			t.Fatalf("%q: wrong embedding", p)
		}
	}
}

func TestPutThenGetAcrossOpens(t *testing.T) {
	f := newFixture(t)
	c := f.open(t, testKey, 32, 0)
	ps := prompts("a photo of a", 300)
	if err := c.Put(ps, vecs(ps, 32)); err != nil {
		t.Fatal(err)
	}
	// Another process: a fresh Cache on the same directory.
	other := f.open(t, testKey, 32, 0)
	checkAll(t, other, ps, 32)
	got := other.Get([]string{"never stored", ps[7], ps[7], ""})
	if got[0] != nil || got[3] != nil || !sameBits(got[1], unitVec(ps[7], 32)) || !sameBits(got[2], got[1]) {
		t.Fatalf("mixed lookup: %v", got)
	}
	if lines := f.log.lines(); len(lines) != 0 {
		t.Errorf("unexpected log: %q", lines)
	}
}

func TestModelsDoNotShareEntries(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, testKey, 8, 0)
	ps := prompts("a dog", 5)
	if err := a.Put(ps, vecs(ps, 8)); err != nil {
		t.Fatal(err)
	}
	other := ModelKey{0xff}
	b := f.open(t, other, 8, 0)
	for i, e := range b.Get(ps) {
		if e != nil {
			t.Fatalf("prompt %d found under another model key", i)
		}
	}
	if a.Dir() == b.Dir() {
		t.Fatal("two models share a directory")
	}
}

func TestPutRefusesWrongEmbeddings(t *testing.T) {
	f := newFixture(t)
	c := f.open(t, testKey, 4, 0)
	if err := c.Put([]string{"p"}, [][]float32{{1, 0, 0}}); err == nil {
		t.Error("Put of a 3-value embedding in a 4-dimensional cache accepted")
	}
	// Vectors that are not unit length are skipped, not stored.
	if err := c.Put([]string{"p", "q"}, [][]float32{{2, 0, 0, 0}, {0, 0, 0, 0}}); err != nil {
		t.Error(err)
	}
	if err := c.Put([]string{"p", "q"}, [][]float32{{1, 0, 0, 0}}); err == nil {
		t.Error("Put with fewer embeddings than prompts accepted")
	}
	if n := len(segmentFiles(t, c.Dir())); n != 0 {
		t.Errorf("%d segments written by refused Puts", n)
	}
	var nilCache *Cache
	if err := nilCache.Put([]string{"p"}, [][]float32{{1}}); err != nil || nilCache.Get([]string{"p"})[0] != nil {
		t.Error("a nil Cache must store and find nothing")
	}
}

func TestOpenFailsWhereNoDirectoryCanBe(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, err := Open(Config{StateDir: file, Dim: 4}); err == nil {
		t.Error("Open with a file as state directory succeeded")
	}
	if _, err := Open(Config{StateDir: t.TempDir(), Dim: 0}); err == nil {
		t.Error("Open with dimension 0 succeeded")
	}
	if _, err := Open(Config{Dim: 4}); err == nil {
		t.Error("Open without a state directory succeeded")
	}
}

// Each kind of damage is ignored with exactly one log line naming the file
// and the reason, the file is removed, the other segments still answer,
// and the next write works.
func TestBadFilesAreIgnoredLoggedAndRemoved(t *testing.T) {
	const dim = 16
	goodPrompts := prompts("good", 4)
	victimPrompts := prompts("victim", 4)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string, f *fixture)
		reason string
	}{
		{"truncated", func(t *testing.T, path string, _ *fixture) { truncate(t, path, -100) }, "truncated"},
		{"truncated header", func(t *testing.T, path string, _ *fixture) { truncate(t, path, 10-fileSize(t, path)) }, "shorter than a header"},
		{"empty", func(t *testing.T, path string, _ *fixture) { truncate(t, path, -fileSize(t, path)) }, "shorter than a header"},
		{"flipped record byte", func(t *testing.T, path string, _ *fixture) { flip(t, path, -5) }, "record checksum mismatch"},
		{"flipped index byte", func(t *testing.T, path string, _ *fixture) { flip(t, path, headerSize+3) }, "index checksum mismatch"},
		{"flipped header byte", func(t *testing.T, path string, _ *fixture) { flip(t, path, 13) }, "header checksum mismatch"},
		{"garbage", func(t *testing.T, path string, _ *fixture) {
			os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 1000), 0o644)
		}, "bad magic"},
		{"other model", func(t *testing.T, path string, _ *fixture) {
			es := entriesFor(victimPrompts, dim)
			os.WriteFile(path, mustEncode(t, ModelKey{9, 9, 9}, dim, es), 0o644)
		}, "written for another model"},
		{"wrong dimension", func(t *testing.T, path string, _ *fixture) {
			os.WriteFile(path, mustEncode(t, testKey, dim/2, entriesFor(victimPrompts, dim/2)), 0o644)
		}, "dimension 8, this model's is 16"},
		{"fifo", func(t *testing.T, path string, _ *fixture) {
			os.Remove(path)
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"symlink to /dev/zero", func(t *testing.T, path string, _ *fixture) {
			os.Remove(path)
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"huge sparse file", func(t *testing.T, path string, _ *fixture) {
			if err := os.Truncate(path, 1<<40); err != nil {
				t.Fatal(err)
			}
		}, "more than a segment may hold"},
		{"directory", func(t *testing.T, path string, _ *fixture) {
			os.Remove(path)
			os.Mkdir(path, 0o755)
		}, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			cache := f.open(t, testKey, dim, 0)
			if err := cache.Put(goodPrompts, vecs(goodPrompts, dim)); err != nil {
				t.Fatal(err)
			}
			f.clock.advance(time.Second)
			before := segmentFiles(t, cache.Dir())
			if err := cache.Put(victimPrompts, vecs(victimPrompts, dim)); err != nil {
				t.Fatal(err)
			}
			victim := newFile(t, before, segmentFiles(t, cache.Dir()))
			c.damage(t, victim, f)

			reader := f.open(t, testKey, dim, 0)
			all := append(slices.Clone(goodPrompts), victimPrompts...)
			got := getWithin(t, reader, all)
			for i, p := range all {
				switch {
				case i < len(goodPrompts) && !sameBits(got[i], unitVec(p, dim)):
					t.Errorf("good prompt %q lost", p)
				case i >= len(goodPrompts) && got[i] != nil:
					t.Errorf("prompt %q taken from the damaged file", p)
				}
			}
			lines := f.log.lines()
			if len(lines) != 1 || !strings.Contains(lines[0], "file="+victim) || !strings.Contains(lines[0], c.reason) {
				t.Fatalf("log %q, want one line naming %s and %q", lines, victim, c.reason)
			}
			if _, err := os.Lstat(victim); !os.IsNotExist(err) {
				t.Errorf("damaged file still there (%v)", err)
			}
			f.log.Reset()
			getWithin(t, reader, all)
			if err := reader.Put(victimPrompts, vecs(victimPrompts, dim)); err != nil {
				t.Fatal(err)
			}
			checkAll(t, f.open(t, testKey, dim, 0), all, dim)
			if lines := f.log.lines(); len(lines) != 0 {
				t.Errorf("after recovery, log %q", lines)
			}
		})
	}
}

// getWithin fails the test instead of hanging if Get blocks (on a FIFO).
func getWithin(t *testing.T, c *Cache, ps []string) [][]float32 {
	t.Helper()
	done := make(chan [][]float32, 1)
	go func() { done <- c.Get(ps) }()
	select {
	case got := <-done:
		return got
	case <-time.After(30 * time.Second):
		t.Fatal("Get blocked")
		return nil
	}
}

func entriesFor(ps []string, dim int) []Entry {
	out := make([]Entry, len(ps))
	for i, p := range ps {
		out[i] = Entry{Prompt: p, Embedding: unitVec(p, dim), Used: time.Unix(1_750_000_000, 0)}
	}
	return out
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func truncate(t *testing.T, path string, delta int64) {
	if err := os.Truncate(path, fileSize(t, path)+delta); err != nil {
		t.Fatal(err)
	}
}

// flip inverts one byte; a negative offset counts from the end.
func flip(t *testing.T, path string, at int64) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += int64(len(data))
	}
	data[at] ^= 0xff
	os.WriteFile(path, data, 0o644)
}

func newFile(t *testing.T, before, after []string) string {
	t.Helper()
	for _, p := range after {
		if !slices.Contains(before, p) {
			return p
		}
	}
	t.Fatalf("no new segment among %v", after)
	return ""
}

func TestRemovingTheDirectoryIsSafe(t *testing.T) {
	f := newFixture(t)
	c := f.open(t, testKey, 8, 0)
	ps := prompts("street", 10)
	if err := c.Put(ps, vecs(ps, 8)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(f.state, DirName)); err != nil {
		t.Fatal(err)
	}
	for i, e := range c.Get(ps) {
		if e != nil {
			t.Fatalf("prompt %d found after the cache was removed", i)
		}
	}
	if err := c.Put(ps, vecs(ps, 8)); err != nil {
		t.Fatalf("Put after removal: %v", err)
	}
	checkAll(t, c, ps, 8)
	if lines := f.log.lines(); len(lines) != 0 {
		t.Errorf("log %q", lines)
	}
}

// One label edit, one small segment: past mergeAbove they are merged, the
// newest use of each prompt kept, and nothing is lost.
func TestSmallSegmentsAreMerged(t *testing.T) {
	f := newFixture(t)
	c := f.open(t, testKey, 8, 0)
	var all []string
	for i := range 3 * mergeAbove {
		ps := prompts(fmt.Sprintf("edit %d", i), 3)
		all = append(all, ps...)
		if err := c.Put(ps, vecs(ps, 8)); err != nil {
			t.Fatal(err)
		}
		f.clock.advance(time.Minute)
		if n := len(segmentFiles(t, c.Dir())); n > mergeAbove+1 {
			t.Fatalf("after %d writes, %d segments", i+1, n)
		}
	}
	checkAll(t, f.open(t, testKey, 8, 0), all, 8)
	if n := len(segmentFiles(t, c.Dir())); n < 2 {
		t.Errorf("%d segments: merging went further than needed", n)
	}
	// The merged files keep each entry's own use time.
	for _, path := range segmentFiles(t, c.Dir()) {
		data, _ := os.ReadFile(path)
		seg, err := DecodeSegment(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range seg.Entries {
			var edit int
			fmt.Sscanf(e.Prompt, "edit %d", &edit)
			if want := time.Unix(1_750_000_000, 0).Add(time.Duration(edit) * time.Minute); !e.Used.Equal(want) {
				t.Fatalf("%q used %v, want %v", e.Prompt, e.Used, want)
			}
		}
	}
}

// With room for three segments, a fourth write evicts the least recently
// used one; an entry read after a day counts as used then.
func TestEvictsLeastRecentlyUsed(t *testing.T) {
	f := newFixture(t)
	const dim = 64
	groups := map[string][]string{}
	for _, g := range []string{"a", "b", "c", "d"} {
		groups[g] = prompts("group "+g, 50)
	}
	segSize := int64(len(mustEncode(t, testKey, dim, entriesFor(groups["a"], dim))))
	c := f.open(t, testKey, dim, 3*segSize+segSize/2)
	for _, g := range []string{"a", "b", "c"} {
		if err := c.Put(groups[g], vecs(groups[g], dim)); err != nil {
			t.Fatal(err)
		}
		f.clock.advance(time.Hour)
	}
	f.clock.advance(2 * refreshAfter)
	checkAll(t, c, groups["a"], dim) // old: refreshed, so a is now the newest
	f.clock.advance(time.Hour)
	if err := c.Put(groups["d"], vecs(groups["d"], dim)); err != nil {
		t.Fatal(err)
	}
	for g, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		got := c.Get(groups[g])
		found := 0
		for _, e := range got {
			if e != nil {
				found++
			}
		}
		if want && found != len(got) || !want && found != 0 {
			t.Errorf("group %s: %d of %d found, want all: %v", g, found, len(got), want)
		}
	}
	var total int64
	for _, p := range segmentFiles(t, c.Dir()) {
		total += fileSize(t, p)
	}
	if total > c.max {
		t.Errorf("cache holds %d bytes, bound %d", total, c.max)
	}
	if !slices.ContainsFunc(f.log.lines(), func(l string) bool { return strings.Contains(l, "evicted") }) {
		t.Errorf("no eviction logged: %q", f.log.lines())
	}
}

// A bound smaller than one write (prompt_cache_max's minimum, 1 MiB,
// against 1,000 prompts at dimension 512, 2.1 MB) keeps that write whole:
// eviction spares the segments just written and takes the older ones.
// The next write may evict this one in turn.
func TestEvictionSparesTheWriteItFollows(t *testing.T) {
	f := newFixture(t)
	const dim = 512
	c := f.open(t, testKey, dim, 1<<20)
	old := prompts("an older label", 100)
	if err := c.Put(old, vecs(old, dim)); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(time.Hour)
	ps := prompts("a photo of a", 1000)
	if err := c.Put(ps, vecs(ps, dim)); err != nil {
		t.Fatal(err)
	}
	checkAll(t, c, ps, dim)
	for i, e := range c.Get(old) {
		if e != nil {
			t.Fatalf("older prompt %d kept though the cache is over its bound", i)
		}
	}
	// Refreshing entries on Get is a write too: a bound of 1 byte keeps
	// what was just refreshed.
	f.clock.advance(2 * refreshAfter)
	tiny := f.open(t, testKey, dim, 1)
	checkAll(t, tiny, ps[:10], dim)
	checkAll(t, tiny, ps[:10], dim)
	f.clock.advance(time.Hour)
	more := prompts("a newer label", 5)
	if err := tiny.Put(more, vecs(more, dim)); err != nil {
		t.Fatal(err)
	}
	checkAll(t, tiny, more, dim)
	for i, e := range tiny.Get(ps[:10]) {
		if e != nil {
			t.Fatalf("prompt %d of an earlier write survived a 1-byte bound", i)
		}
	}
}

// A Cache without a bound of its own (a one-shot command's) evicts
// nothing, whatever the total, but still merges small segments and
// removes dead writers' temporary files.
func TestNoEvictionKeepsEverything(t *testing.T) {
	f := newFixture(t)
	const dim = 8
	other := f.open(t, ModelKey{7}, dim, 0)
	old := prompts("another model", 50)
	if err := other.Put(old, vecs(old, dim)); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(other.Dir(), tempPrefix+"dead")
	os.WriteFile(stale, []byte("half a segment"), 0o644)
	then := f.clock.now().Add(-2 * staleTemp)
	os.Chtimes(stale, then, then)
	// Twice the default bound, as eviction sees it (the listed size; a
	// sparse file takes no disk), and the oldest: any bound evicts it.
	huge := filepath.Join(other.Dir(), "0123456789abcdef"+segmentExt)
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 2*DefaultMaxBytes); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(huge, then, then)
	c := f.open(t, testKey, dim, NoEviction)
	var all []string
	for i := range 2 * mergeAbove {
		f.clock.advance(time.Minute)
		ps := prompts(fmt.Sprintf("edit %d", i), 3)
		all = append(all, ps...)
		if err := c.Put(ps, vecs(ps, dim)); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, c, all, dim)
	for _, p := range append(segmentFiles(t, other.Dir()), huge) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("evicted: %v", err)
		}
	}
	if n := len(segmentFiles(t, c.Dir())); n > mergeAbove+1 {
		t.Errorf("%d segments: no compaction", n)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a dead writer's temporary file survived")
	}
	if slices.ContainsFunc(f.log.lines(), func(l string) bool { return strings.Contains(l, "evicted") }) {
		t.Errorf("evicted: %q", f.log.lines())
	}
	if _, err := Open(Config{StateDir: f.state, Dim: dim, MaxBytes: -2}); err == nil {
		t.Error("a negative bound other than NoEviction accepted")
	}
}

// Eviction is global: another model's old segments go first.
func TestEvictionSpansModels(t *testing.T) {
	f := newFixture(t)
	const dim = 32
	old := prompts("old model", 40)
	segSize := int64(len(mustEncode(t, testKey, dim, entriesFor(old, dim))))
	oldModel := f.open(t, ModelKey{7}, dim, 2*segSize+segSize/2)
	if err := oldModel.Put(old, vecs(old, dim)); err != nil {
		t.Fatal(err)
	}
	c := f.open(t, testKey, dim, 2*segSize+segSize/2)
	for _, g := range []string{"x", "y"} {
		f.clock.advance(time.Hour)
		ps := prompts("new "+g, 40)
		if err := c.Put(ps, vecs(ps, dim)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(segmentFiles(t, oldModel.Dir())); n != 0 {
		t.Errorf("the old model keeps %d segments", n)
	}
	checkAll(t, c, prompts("new x", 40), dim)
}

func TestStaleTemporaryFilesAreRemoved(t *testing.T) {
	f := newFixture(t)
	c := f.open(t, testKey, 8, 1) // every write evicts
	stale := filepath.Join(c.Dir(), tempPrefix+"dead")
	fresh := filepath.Join(c.Dir(), tempPrefix+"alive")
	os.WriteFile(stale, []byte("half a segment"), 0o644)
	os.WriteFile(fresh, []byte("being written"), 0o644)
	old := f.clock.now().Add(-2 * staleTemp)
	os.Chtimes(stale, old, old)
	os.Chtimes(fresh, f.clock.now(), f.clock.now())
	if err := c.Put([]string{"p"}, [][]float32{unitVec("p", 8)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a dead writer's temporary file survived")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("a live writer's temporary file was removed")
	}
}

func TestAdministratorFilesGoToTheStateDirOwner(t *testing.T) {
	state := t.TempDir()
	if os.Geteuid() != 0 {
		if ownerOf(state).chown {
			t.Fatal("a non-root process would chown")
		}
		return
	}
	const nobody = 65534
	if err := os.Chown(state, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	c, err := Open(Config{StateDir: state, Model: testKey, Dim: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put([]string{"p"}, [][]float32{{1, 0, 0, 0}}); err != nil {
		t.Fatal(err)
	}
	paths := append([]string{filepath.Join(state, DirName), c.root, c.dir, filepath.Join(c.root, lockName)}, segmentFiles(t, c.dir)...)
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != nobody {
			t.Errorf("%s belongs to uid %d, want %d", p, st.Uid, nobody)
		}
	}
}

// A lock file that the service user cannot write (root made it with
// `sudo clipd classify`, or its mode is 0444) must not turn maintenance
// off: the next write still compacts and evicts. As root, the service
// user is played by a helper process running as nobody against a lock
// file that belongs to root.
func TestMaintenanceWithALockFileNotWritable(t *testing.T) {
	dir, err := os.MkdirTemp("", "promptcache-lock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	root := os.Geteuid() == 0
	if root {
		// Everything on the way to the state directory must be open to
		// nobody, and the state directory its own.
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(state, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	// An older segment that the bound of the helper's write evicts.
	old, err := Open(Config{StateDir: state, Model: testKey, Dim: helperDim})
	if err != nil {
		t.Fatal(err)
	}
	ps := prompts("older", 20)
	if err := old.Put(ps, vecs(ps, helperDim)); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(old.root, lockName)
	if root {
		// What clipd before this fix left behind: root's, 0644.
		if err := os.Chown(lock, 0, 0); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Chmod(lock, 0o444); err != nil {
		t.Fatal(err)
	}

	var log bytes.Buffer
	if root {
		bin := filepath.Join(dir, "promptcache.test")
		exe, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=maintain", "PROMPTCACHE_TEST_STATE="+state)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Run(); err != nil {
			t.Fatalf("helper as nobody: %v\n%s", err, log.String())
		}
	} else if err := maintainHelper(state, &log); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "no maintenance") || !strings.Contains(log.String(), "evicted") {
		t.Errorf("the write did not maintain the cache: %s", log.String())
	}
	for i, e := range old.Get(ps) {
		if e != nil {
			t.Fatalf("older prompt %d still cached: nothing was evicted", i)
		}
	}
}

// maintainHelper plays a daemon whose cache is bounded to 1 byte: one
// write, whose maintenance evicts everything older.
func maintainHelper(state string, w io.Writer) error {
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := Open(Config{StateDir: state, Model: testKey, Dim: helperDim, MaxBytes: 1, Log: log})
	if err != nil {
		return err
	}
	ps := prompts("newer", 2)
	return c.Put(ps, vecs(ps, helperDim))
}

// Package promptcache keeps CLIP prompt embeddings on disk, so that a
// restart of the daemon, a reload of a labels file or a one-shot `clipd
// classify` encodes only the prompts that the same text encoder has never
// seen. Encoding prompts is the slow part of starting: 1,800 CIFAR-100
// prompts take about a minute on two CPU cores with ViT-B/32, and reading
// them back takes milliseconds.
//
// Where. Under StateDir/prompt-cache/v1/ (StateDir is `[model] state_dir`,
// /var/lib/clipd by default, systemd's StateDirectory=clipd), one directory
// per text encoder, named by its key: a SHA-256 over the text encoder's
// ONNX bytes, the tokenizer files, the backend and the precision the text
// tower runs at (model.Model.PromptCacheKey). An FP16 TensorRT embedding
// never answers for an FP32 ONNX Runtime one. The version directory (v1)
// changes with the file format, so that clipd versions never read each
// other's files.
//
// Format. Each directory holds immutable segment files, <16 hex>.seg: a
// header (magic, format version, dimension, entry count, the model key,
// CRC-32C checksums of header and index), an index (per entry: a hash of
// the prompt, when it was last used, the record's length and CRC-32C) and
// the records (the prompt text and its float32 unit vector). See format.go
// for the byte layout. A lookup reads headers and indexes, then only the
// records it needs, each checked against its checksum, its prompt hash,
// the prompt text asked for, its length and that it is a finite unit
// vector.
//
// Safety. A segment is written to a temporary file, synced, and renamed to
// a name never used before, then the directory is synced: readers see a
// whole file or none. Files are never modified in place, so any number of
// daemons and one-shot commands can share one cache without locks; they
// may write the same prompt twice, which costs space, not correctness.
// Compaction and eviction delete files and take a non-blocking flock on
// StateDir/prompt-cache/v1/lock, so they run in one process at a time and
// never wait for one another. A file that is truncated, corrupt, written
// for another model or dimension, of another format, or not a regular file
// at all (a FIFO, a symlink, a device) is ignored and removed, with one
// log line naming the file and why; it never fails the caller, whose
// prompts are then simply encoded again. Reads open with O_NOFOLLOW and
// O_NONBLOCK, check the file type with fstat and bound every read by the
// size the header and index allow. Removing the whole directory at any
// time is safe: the next write recreates it.
//
// Bounds. All segments together stay within Config.MaxBytes (1 GiB by
// default, `[model] prompt_cache_max`), give or take the segments just
// written: after a write, the segments whose entries were used least
// recently are deleted until the total fits, except those the write
// itself made, so that a bound smaller than one write still keeps that
// write. A one-shot command opens the cache with NoEviction: it
// compacts but leaves eviction to the daemon, whose bound it does not
// know. An entry's use time is
// refreshed on disk when a lookup finds it more than a day old, and
// compaction groups entries of like age, so whole segments of cold
// entries go first. Small segments (one per label edit) are merged once a
// directory has more than a few, which bounds the files a lookup opens.
//
// Verified here: real files on ext4/overlayfs, corruption of every kind
// listed above, two processes writing and compacting one cache at once.
package promptcache

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/clipd/clipd/internal/safefile"
)

// DefaultMaxBytes bounds the cache when Config.MaxBytes is 0.
const DefaultMaxBytes = 1 << 30

// NoEviction as Config.MaxBytes makes a Cache that compacts but never
// evicts: the bound of a shared cache is its owner's (the daemon's
// prompt_cache_max), which a one-shot command does not know, and
// evicting to any other bound would trim the daemon's cache or let it
// grow past its own. What such a Cache writes is evicted by the next
// write of a Cache that has a bound.
const NoEviction int64 = -1

const (
	// DirName is the cache's directory inside the state directory.
	DirName    = "prompt-cache"
	versionDir = "v1"
	segmentExt = ".seg"
	tempPrefix = safefile.TempPrefix
	lockName   = "lock"

	// segmentTarget bounds the segments this package writes.
	segmentTarget = 8 << 20
	// smallSegment: segments below it are merged once there are more
	// than mergeAbove of them in one model's directory.
	smallSegment = segmentTarget / 2
	mergeAbove   = 8
	// mergeInput bounds what one compaction reads into memory.
	mergeInput = 64 << 20
	// maxDirEntries bounds a directory listing; a cache holds far fewer
	// files (MaxBytes / smallSegment plus the small ones).
	maxDirEntries = 4096
	// refreshAfter: an entry found older than this is written again with
	// the current time, so that eviction sees it as recently used.
	refreshAfter = 24 * time.Hour
	// staleTemp: a temporary file this old belongs to a writer that died.
	staleTemp = time.Hour
)

// Config configures Open.
type Config struct {
	// StateDir is clipd's state directory; the cache lives in
	// StateDir/prompt-cache.
	StateDir string
	// Model identifies the text encoder whose embeddings this Cache
	// reads and writes (model.Model.PromptCacheKey).
	Model ModelKey
	// Dim is the embedding length, 1..MaxDim.
	Dim int
	// MaxBytes bounds the files of every model together; 0 means
	// DefaultMaxBytes, NoEviction no bound of this Cache's own.
	MaxBytes int64
	// Log receives one line per ignored file and per failed write.
	Log *slog.Logger
}

// Cache is one text encoder's view of an on-disk prompt cache. It is safe
// for concurrent use, and any number of processes may use the same
// directory. A nil *Cache stores nothing and finds nothing.
type Cache struct {
	root  string // StateDir/prompt-cache/v1
	dir   string // root/<model key>
	model ModelKey
	dim   int
	max   int64
	log   *slog.Logger
	owner owner
	dirs  []string // to create, parents first
	now   func() time.Time

	mu       sync.Mutex
	reported map[string]bool
}

// Open prepares the cache directory of cfg.Model, creating it if needed.
// It fails when the configuration is invalid or the directory cannot be
// created; the caller then works without a cache.
func Open(cfg Config) (*Cache, error) {
	switch {
	case cfg.StateDir == "":
		return nil, errors.New("promptcache: no state directory")
	case cfg.Dim < 1 || cfg.Dim > MaxDim:
		return nil, fmt.Errorf("promptcache: dimension %d outside 1..%d", cfg.Dim, MaxDim)
	case cfg.MaxBytes < 0 && cfg.MaxBytes != NoEviction:
		return nil, fmt.Errorf("promptcache: negative size bound %d", cfg.MaxBytes)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	top := filepath.Join(cfg.StateDir, DirName)
	root := filepath.Join(top, versionDir)
	c := &Cache{
		root: root, dir: filepath.Join(root, hex.EncodeToString(cfg.Model[:])),
		model: cfg.Model, dim: cfg.Dim, max: cfg.MaxBytes, log: log,
		now: time.Now, reported: make(map[string]bool),
	}
	c.dirs = []string{top, root, c.dir}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("promptcache: %w", err)
	}
	c.owner = ownerOf(cfg.StateDir)
	if err := c.owner.mkdirs(c.dirs...); err != nil {
		return nil, fmt.Errorf("promptcache: %w", err)
	}
	return c, nil
}

// Dir is the directory of this model's segments.
func (c *Cache) Dir() string { return c.dir }

// Get returns the stored embedding of each prompt, nil where there is
// none. It never fails: a file it cannot use is logged, removed and
// skipped, and its prompts are reported missing.
func (c *Cache) Get(prompts []string) [][]float32 {
	out := make([][]float32, len(prompts))
	if c == nil || len(prompts) == 0 {
		return out
	}
	want := make(map[[hashSize]byte][]int, len(prompts))
	for i, p := range prompts {
		if p != "" && len(p) <= MaxPromptBytes {
			h := promptHash(p)
			want[h] = append(want[h], i)
		}
	}
	var stale []Entry
	cutoff := c.now().Add(-refreshAfter).Unix()
	// A compaction in another process may replace files between our
	// listing and our reads; one more listing finds its output.
	for attempt := 0; attempt < 2 && len(want) > 0; attempt++ {
		segs := c.segments(c.dir)
		vanished := false
		for _, s := range segs {
			if len(want) == 0 {
				break
			}
			if c.lookup(filepath.Join(c.dir, s.name), prompts, want, out, cutoff, &stale) {
				vanished = true
			}
		}
		if !vanished {
			break
		}
	}
	if len(stale) > 0 {
		now := c.now()
		for i := range stale {
			stale[i].Used = now
		}
		if err := c.write(stale); err != nil {
			c.log.Warn("prompt cache: refreshing entries failed", "dir", c.dir, "err", err)
		}
	}
	return out
}

// lookup fills out from the segment at path for the prompts still in want,
// deleting them from want. It reports whether the file had vanished.
func (c *Cache) lookup(path string, prompts []string, want map[[hashSize]byte][]int, out [][]float32, cutoff int64, stale *[]Entry) (vanished bool) {
	f, size, err := openSegment(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true
		}
		c.reject(path, err)
		return false
	}
	defer f.Close()
	idx, err := c.readIndex(f, size)
	if err != nil {
		c.reject(path, err)
		return false
	}
	var found [][hashSize]byte
	if len(want) < len(idx.items) {
		for h := range want {
			if _, ok := idx.byHash[h]; ok {
				found = append(found, h)
			}
		}
	} else {
		for _, it := range idx.items {
			if _, ok := want[it.hash]; ok {
				found = append(found, it.hash)
			}
		}
	}
	// A file with one bad record is ignored as a whole: nothing from it
	// is used until every record asked for has passed its checks.
	entries := make([]Entry, 0, len(found))
	var stales []bool
	for _, h := range found {
		i := idx.byHash[h]
		it := idx.items[i]
		rec := make([]byte, it.length)
		if _, err := f.ReadAt(rec, it.offset); err != nil {
			c.reject(path, fmt.Errorf("reading entry %d: %w", i, err))
			return false
		}
		e, err := parseRecord(rec, it, c.dim)
		if err != nil {
			c.reject(path, fmt.Errorf("entry %d: %w", i, err))
			return false
		}
		entries = append(entries, e)
		stales = append(stales, it.used < cutoff)
	}
	for j, e := range entries {
		slots := want[found[j]]
		if e.Prompt != prompts[slots[0]] {
			continue // another prompt with the same 128-bit hash
		}
		for _, k := range slots {
			out[k] = e.Embedding
		}
		delete(want, found[j])
		if stales[j] {
			*stale = append(*stale, e)
		}
	}
	return false
}

// readIndex reads and checks the header and index of an open segment.
func (c *Cache) readIndex(f *os.File, size int64) (*segmentIndex, error) {
	var hb [headerSize]byte
	if size < headerSize {
		return nil, fmt.Errorf("%d bytes is shorter than a header (truncated?)", size)
	}
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	h, err := parseHeader(hb[:], size)
	if err != nil {
		return nil, err
	}
	if err := c.checkHeader(h); err != nil {
		return nil, err
	}
	ib := make([]byte, h.count*indexEntry)
	if _, err := f.ReadAt(ib, headerSize); err != nil {
		return nil, fmt.Errorf("reading the index: %w", err)
	}
	return parseIndex(ib, h, size)
}

func (c *Cache) checkHeader(h header) error {
	if h.model != c.model {
		return fmt.Errorf("written for another model (key %x…, this directory is %x…)", h.model[:6], c.model[:6])
	}
	if h.dim != c.dim {
		return fmt.Errorf("dimension %d, this model's is %d", h.dim, c.dim)
	}
	return nil
}

// reject logs why the file at path was not used, once per file and
// process, and removes it when its content (not our access to it) is at
// fault.
func (c *Cache) reject(path string, why error) {
	var pe *fs.PathError
	removable := !errors.As(why, &pe) || errors.Is(why, errNotOurs)
	c.mu.Lock()
	seen := c.reported[path]
	c.reported[path] = true
	c.mu.Unlock()
	if !seen {
		if removable {
			c.log.Warn("prompt cache: ignoring and removing a bad file", "file", path, "reason", why.Error())
		} else {
			c.log.Warn("prompt cache: cannot read a file; ignoring it", "file", path, "err", why.Error())
		}
	}
	if removable {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) && !seen {
			c.log.Warn("prompt cache: cannot remove a bad file", "file", path, "err", err.Error())
		}
	}
}

// segments lists the segment files of dir, most recently used first.
func (c *Cache) segments(dir string) []dirEntry {
	ents, err := listDir(dir)
	if err != nil {
		c.reject(dir, err)
		return nil
	}
	segs := ents[:0]
	for _, e := range ents {
		if isSegmentName(e.name) {
			segs = append(segs, e)
		}
	}
	slices.SortFunc(segs, func(a, b dirEntry) int { return b.mtime.Compare(a.mtime) })
	return segs
}

// Put stores embeddings just computed for prompts. Embeddings must have the
// model's dimension; those that are not finite unit vectors (a degenerate
// zero embedding) and prompts longer than MaxPromptBytes are skipped. An
// error means nothing or only part was stored; the cache stays valid.
func (c *Cache) Put(prompts []string, embs [][]float32) error {
	if c == nil {
		return nil
	}
	if len(prompts) != len(embs) {
		return fmt.Errorf("promptcache: %d prompts but %d embeddings", len(prompts), len(embs))
	}
	now := c.now()
	seen := make(map[string]bool, len(prompts))
	entries := make([]Entry, 0, len(prompts))
	for i, p := range prompts {
		if p == "" || len(p) > MaxPromptBytes || seen[p] {
			continue
		}
		seen[p] = true
		if len(embs[i]) != c.dim {
			return fmt.Errorf("promptcache: prompt %q: embedding has %d values, want %d", p, len(embs[i]), c.dim)
		}
		if checkUnit(embs[i]) != nil {
			continue // degenerate (a zero vector): not worth keeping
		}
		entries = append(entries, Entry{Prompt: p, Embedding: embs[i], Used: now})
	}
	return c.write(entries)
}

// write stores entries in new segments of at most segmentTarget bytes,
// then maintains the cache. The segments just written are spared by that
// maintenance: with a bound smaller than one write (prompt_cache_max may
// be 1 MiB, 1,000 prompts at dimension 512 are 2 MB), eviction would
// otherwise delete what the caller is about to read back.
func (c *Cache) write(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	fresh := make(map[string]bool)
	for _, chunk := range c.chunks(entries) {
		path, err := c.writeSegment(chunk)
		if err != nil {
			return err
		}
		fresh[path] = true
	}
	c.maintain(fresh)
	return nil
}

// chunks splits entries into groups that each fit in one segment.
func (c *Cache) chunks(entries []Entry) [][]Entry {
	var out [][]Entry
	size, start := headerSize, 0
	for i, e := range entries {
		n := indexEntry + recordLen(len(e.Prompt), c.dim)
		if i > start && size+n > segmentTarget {
			out = append(out, entries[start:i])
			size, start = headerSize, i
		}
		size += n
	}
	return append(out, entries[start:])
}

// writeSegment stores entries in one new segment and returns its path.
func (c *Cache) writeSegment(entries []Entry) (string, error) {
	data, err := encodeSegment(c.model, c.dim, entries)
	if err != nil {
		return "", fmt.Errorf("promptcache: %w", err)
	}
	newest := entries[0].Used
	for _, e := range entries {
		if e.Used.After(newest) {
			newest = e.Used
		}
	}
	path, err := writeSegment(c.dir, data, newest)
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed the cache directory; that is allowed.
		if err = c.owner.mkdirs(c.dirs...); err == nil {
			path, err = writeSegment(c.dir, data, newest)
		}
	}
	if err != nil {
		return "", fmt.Errorf("promptcache: writing a segment in %s: %w", c.dir, err)
	}
	c.owner.adopt(path)
	return path, nil
}

// maintain merges small segments and evicts old ones, unless another
// process is doing so now. The segments in fresh (paths) are neither
// merged nor evicted; a later write's maintenance may merge or evict them.
func (c *Cache) maintain(fresh map[string]bool) {
	unlock, ok, err := tryLock(filepath.Join(c.root, lockName), c.owner)
	if err != nil {
		c.log.Warn("prompt cache: no maintenance", "err", err)
		return
	}
	if !ok {
		return
	}
	defer unlock()
	c.compact(fresh)
	c.evict(fresh)
}

// compact merges the small segments of this model into few, keeping the
// newest use of each prompt and grouping entries by age.
func (c *Cache) compact(fresh map[string]bool) {
	var small []dirEntry
	for _, s := range c.segments(c.dir) {
		if s.size < smallSegment && !fresh[filepath.Join(c.dir, s.name)] {
			small = append(small, s)
		}
	}
	if len(small) <= mergeAbove {
		return
	}
	slices.SortFunc(small, func(a, b dirEntry) int { return cmp.Compare(a.size, b.size) })
	merged := make(map[string]Entry)
	var inputs []string
	total := int64(0)
	for _, s := range small {
		if total+s.size > mergeInput {
			break
		}
		path := filepath.Join(c.dir, s.name)
		data, err := readSegmentFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			c.reject(path, err)
			continue
		}
		seg, err := DecodeSegment(data)
		if err == nil {
			err = c.checkHeader(header{model: seg.Model, dim: seg.Dim})
		}
		if err != nil {
			c.reject(path, err)
			continue
		}
		total += s.size
		inputs = append(inputs, path)
		for _, e := range seg.Entries {
			if old, ok := merged[e.Prompt]; !ok || e.Used.After(old.Used) {
				merged[e.Prompt] = e
			}
		}
	}
	if len(inputs) < 2 {
		return
	}
	entries := make([]Entry, 0, len(merged))
	for _, e := range merged {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b Entry) int {
		if d := b.Used.Compare(a.Used); d != 0 {
			return d
		}
		return cmp.Compare(a.Prompt, b.Prompt)
	})
	for _, chunk := range c.chunks(entries) {
		if _, err := c.writeSegment(chunk); err != nil {
			// The inputs stay: nothing is lost, the merge is retried.
			c.log.Warn("prompt cache: compaction failed", "dir", c.dir, "err", err)
			return
		}
	}
	for _, p := range inputs {
		os.Remove(p)
	}
	c.log.Debug("prompt cache compacted", "dir", c.dir, "segments", len(inputs), "entries", len(entries))
}

// evict deletes the least recently used segments of every model until
// the cache fits in max bytes (none with NoEviction), sparing those in fresh (so the cache may
// exceed max by what the last write stored), and temporary files of dead
// writers.
func (c *Cache) evict(fresh map[string]bool) {
	models, err := listDir(c.root)
	if err != nil {
		c.log.Warn("prompt cache: cannot list", "dir", c.root, "err", err)
		return
	}
	type seg struct {
		path  string
		size  int64
		mtime time.Time
	}
	var segs []seg
	var total int64
	now := c.now()
	for _, m := range models {
		if !m.mode.IsDir() || len(m.name) != 64 || !isLowerHex(m.name) {
			continue
		}
		dir := filepath.Join(c.root, m.name)
		ents, err := listDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			path := filepath.Join(dir, e.name)
			switch {
			case len(e.name) > len(tempPrefix) && e.name[:len(tempPrefix)] == tempPrefix:
				if now.Sub(e.mtime) > staleTemp {
					os.Remove(path)
				} else {
					total += e.size
				}
			case isSegmentName(e.name) && e.mode.IsRegular():
				total += e.size
				if !fresh[path] {
					segs = append(segs, seg{path, e.size, e.mtime})
				}
			}
		}
	}
	if c.max == NoEviction || total <= c.max {
		return
	}
	slices.SortFunc(segs, func(a, b seg) int { return a.mtime.Compare(b.mtime) })
	freed, files := int64(0), 0
	for _, s := range segs {
		if total <= c.max {
			break
		}
		if err := os.Remove(s.path); err == nil || errors.Is(err, fs.ErrNotExist) {
			total -= s.size
			freed += s.size
			files++
		}
	}
	if files > 0 {
		c.log.Info("prompt cache: evicted the least recently used entries", "dir", c.root,
			"files", files, "bytes", freed, "max_bytes", c.max)
	}
}

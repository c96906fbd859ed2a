package history

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"
)

// maxSegmentFile bounds every segment file read: segmentBytes never
// exceeds 64 MiB, whatever max_bytes a previous run had.
const maxSegmentFile = 64 << 20

// maxDirEntries bounds the directory listing read at Open.
const maxDirEntries = 1 << 20

// queueItems bounds the queue's length; QueueBytes is the real bound.
const queueItems = 8192

// Store keeps embeddings and thumbnails of classified frames and answers
// searches over them. Add never blocks: records queue for one writer
// goroutine, which owns every file write.
type Store struct {
	cfg  Config
	log  *slog.Logger
	cat  *catalog
	lock *os.File

	queue  chan item
	quit   chan struct{}
	done   chan struct{}
	closed atomic.Bool
	// sendMu orders Add's queueing against Close: Add queues under the
	// read lock only while the store is open, Close marks it closed under
	// the write lock, so nothing is queued after the writer's last drain
	// (its bytes would never leave QueuedBytes).
	sendMu sync.RWMutex

	admitMu sync.Mutex
	admit   map[Target]*admission

	// mu guards segs (sorted by id, then kind), targets and labels: the
	// writer changes them under the write lock, a search reads them under
	// the read lock, briefly: it takes a reference on each segment it
	// scans (segment.readers) and scans without mu, so that the writer
	// and Status never wait for a scan. Appends to a segment need no
	// lock: a search reads a segment's count first and only the records
	// it covers.
	mu      sync.RWMutex
	segs    []*segment
	targets map[uint32]Target
	labels  map[uint32]string

	// Writer-owned.
	targetIDs   map[Target]uint32
	labelIDs    map[string]uint32
	activeVec   *segment
	activeThumb *segment
	pending     []byte // records encoded for activeVec, not yet written
	pendingN    int
	pendingT    []int64
	pendingJPEG []pendingThumb // of pending records, written after them
	thumbRows   []thumbRow
	retryAt     time.Time
	lastSync    time.Time
	// doomed are segments out of searches whose deletion waits for the
	// searches that still read them.
	doomed []doomedSegment

	paused      atomic.Bool
	reasonMu    sync.Mutex
	pauseReason string

	stored, skipped, dropped, droppedPaused, invalid, pauses atomic.Uint64
	queued                                                   atomic.Int64
	tornBytes                                                int64
}

type doomedSegment struct {
	seg *segment
	why string
}

type pendingThumb struct {
	target uint32
	time   int64
	seq    uint64
	jpeg   []byte
}

type admission struct {
	record, thumb time.Time
}

// item is a record on its way to the writer, or a Flush barrier.
type item struct {
	rec     Record
	size    int64
	barrier chan struct{}
}

// Open validates cfg, opens (or creates) the store in cfg.Dir, recovers
// from a crash (torn tails are cut off and logged) and starts the writer.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("history: %s is not a directory", cfg.Dir)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cat, err := openCatalog(filepath.Join(cfg.Dir, "history.db"))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("history: catalog %w", err)
	}
	s := &Store{
		cfg: cfg, log: cfg.Log, cat: cat, lock: lock,
		queue: make(chan item, queueItems), quit: make(chan struct{}), done: make(chan struct{}),
		admit:     make(map[Target]*admission),
		targetIDs: make(map[Target]uint32), labelIDs: make(map[string]uint32),
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("history: %s: %w", cfg.Dir, err)
	}
	s.maintain()
	go s.run()
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("history: %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("history: locking %s: %w", dir, err)
	}
	return f, nil
}

// segKey names a segment file: two files may carry one id, one of each
// kind (a file the catalog never knew beside one it does).
type segKey struct {
	id   uint64
	kind byte
}

func compareSeg(seg *segment, k segKey) int {
	return cmp.Or(cmp.Compare(seg.id, k.id), cmp.Compare(seg.kind, k.kind))
}

// idRefs are the target and label ids that segment records hold.
type idRefs struct {
	targets, labels map[uint32]bool
}

// load reconciles the catalog with the segment files: the files are the
// truth for what was written, the catalog for what was sealed and for
// the names behind the ids.
func (s *Store) load() error {
	rows, err := s.cat.segments()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	files, maxID, err := s.segmentFiles()
	if err != nil {
		return err
	}
	// The ids of the files found, bad ones included, are never given to a
	// new segment: it would meet the old file's name.
	if maxID > 0 {
		if err := s.cat.reserveSegments(maxID); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	refs := idRefs{targets: make(map[uint32]bool), labels: make(map[uint32]bool)}
	catalogued := make(map[uint64]byte) // the kind of the row that has the id
	loaded := make(map[segKey]bool)
	for i := range rows {
		row := &rows[i]
		if row.insane != "" {
			s.log.Warn("history: ignoring a catalog row out of range; a file of that id is read through as if the catalog did not know it",
				"segment", row.id, "row", row.insane)
			if err := s.cat.forgetSegmentRow(row.id); err != nil {
				return fmt.Errorf("catalog: %w", err)
			}
			continue
		}
		k := segKey{row.id, row.kind}
		if !files[k] {
			// Deletion unlinks the file before the row goes; a crash
			// between the two leaves this row.
			s.log.Info("history: forgetting a segment whose file is gone", "segment", segmentName(row.kind, row.id))
			if err := s.cat.deleteSegment(row.id, row.kind); err != nil {
				return fmt.Errorf("catalog: %w", err)
			}
			continue
		}
		catalogued[row.id] = row.kind
		loaded[k] = true
		s.loadOne(row.kind, row.id, row, refs)
	}
	keys := make([]segKey, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	// Vectors first within an id, as their records name the targets.
	slices.SortFunc(keys, func(a, b segKey) int { return cmp.Or(cmp.Compare(a.id, b.id), -cmp.Compare(a.kind, b.kind)) })
	for _, k := range keys {
		if loaded[k] {
			continue
		}
		name := segmentName(k.kind, k.id)
		if other, taken := catalogued[k.id]; taken {
			s.log.Error("history: segment left out: its id is another segment's", "segment", name, "other", segmentName(other, k.id))
			s.addBad(k.kind, k.id, nil)
			continue
		}
		// A catalog lost or replaced: the file still says what it holds.
		s.log.Warn("history: adopting a segment the catalog does not know", "segment", name)
		if s.loadOne(k.kind, k.id, nil, refs) {
			catalogued[k.id] = k.kind
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return compareSeg(a, segKey{b.id, b.kind}) })
	targets, err := s.cat.targets()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	labels, err := s.cat.labels()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if targets.ignored+labels.ignored > 0 {
		s.log.Warn("history: ignoring catalog rows whose id is out of range", "targets", targets.ignored, "labels", labels.ignored,
			"max_id", maxCatalogID)
	}
	s.targets, s.labels = targets.byID, labels.byID
	// Placeholders keep their ids taken; no record of a new target or
	// label is ever given one.
	for id, t := range s.targets {
		if !targets.lost[id] {
			s.targetIDs[t] = id
		}
	}
	for id, l := range s.labels {
		if !labels.lost[id] {
			s.labelIDs[l] = id
		}
	}
	return s.reserveIDs(refs)
}

// reserveIDs gives the target and label ids that segments hold and the
// catalog lacks (a catalog deleted or replaced, or one whose last
// transactions a power loss took) placeholder rows: no new target or
// label is given them, and their records show as "(unknown #id)" rather
// than under another's name.
func (s *Store) reserveIDs(refs idRefs) error {
	var ts, ls []uint32
	ignored := 0
	for id := range refs.targets {
		switch _, ok := s.targets[id]; {
		case ok:
		case id == 0 || id > maxCatalogID:
			ignored++
		default:
			ts = append(ts, id)
		}
	}
	for id := range refs.labels {
		switch _, ok := s.labels[id]; {
		case ok:
		case id > maxCatalogID:
			ignored++
		default:
			ls = append(ls, id)
		}
	}
	if ignored > 0 {
		s.log.Warn("history: segment records hold target or label ids out of range; they show as unknown", "ids", ignored)
	}
	if len(ts)+len(ls) == 0 {
		return nil
	}
	slices.Sort(ts)
	slices.Sort(ls)
	s.log.Warn("history: the catalog lacks target or label ids that segments hold (it was lost, replaced or rolled back); "+
		"they are reserved and their records show as (unknown #id)", "targets", len(ts), "labels", len(ls))
	if err := s.cat.reserve(ts, ls); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	for _, id := range ts {
		s.targets[id] = Target{Camera: lostName(id)}
	}
	for _, id := range ls {
		s.labels[id] = lostName(id)
	}
	return nil
}

// targetOf and labelOf name a record's ids; the caller holds mu. An id
// the catalog has no row for (out of range) is shown as unknown too.
func (s *Store) targetOf(id uint32) Target {
	if t, ok := s.targets[id]; ok {
		return t
	}
	return Target{Camera: lostName(id)}
}

func (s *Store) labelOf(id uint32) string {
	if id == 0 {
		return ""
	}
	if l, ok := s.labels[id]; ok {
		return l
	}
	return lostName(id)
}

// segmentFiles lists the segment files in the directory, and the highest
// id among them.
func (s *Store) segmentFiles() (map[segKey]bool, uint64, error) {
	d, err := os.Open(s.cfg.Dir)
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	entries, err := d.ReadDir(maxDirEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	files := make(map[segKey]bool)
	var maxID uint64
	for _, e := range entries {
		kind, id, ok := parseSegmentName(e.Name())
		if !ok {
			continue
		}
		files[segKey{id, kind}] = true
		maxID = max(maxID, id)
	}
	return files, maxID, nil
}

// loadOne opens one segment found at Open, collecting the ids its records
// hold when the catalog cannot vouch for them, and says whether the
// catalog has a row for it. A segment that fails validation is kept on
// disk, counted in Status.BadSegments and left out of searches; retention
// and max_bytes still delete it in time.
func (s *Store) loadOne(kind byte, id uint64, row *segRow, refs idRefs) bool {
	name := segmentName(kind, id)
	if row != nil && row.sealed && kind == kindThumbnails {
		// Indexing its last thumbnails may have failed (a full disk)
		// after the segment was sealed: then it is read through again.
		if n, err := s.cat.thumbsIn(id); err != nil || n != row.records {
			unsealed := *row
			unsealed.sealed = false
			row = &unsealed
		}
	}
	seg, locs, torn, err := loadSegment(s.cfg.Dir, kind, id, row, maxSegmentFile)
	if err != nil {
		s.log.Error("history: segment left out", "segment", name, "err", err)
		s.addBad(kind, id, row)
		return row != nil
	}
	if torn > 0 {
		s.log.Warn("history: discarded the torn tail of a segment (the process stopped while writing it)",
			"segment", name, "bytes", torn, "kept", seg.count.Load())
		s.tornBytes += torn
	}
	catalogued := row != nil
	if row == nil {
		if _, err := s.cat.insertSegment(segRow{id: id, kind: kind, model: seg.model, dim: seg.dim, created: seg.created}); err != nil {
			s.log.Error("history: cataloguing an adopted segment", "segment", name, "err", err)
		} else {
			catalogued = true
		}
	}
	if row == nil || !row.sealed || torn > 0 {
		if err := s.cat.sealSegment(id, kind, seg.count.Load(), seg.size.Load(), seg.first.Load(), seg.last.Load()); err != nil {
			s.log.Error("history: sealing a recovered segment", "segment", name, "err", err)
		}
	}
	if len(locs) > 0 {
		rows := make([]thumbRow, len(locs))
		for i, l := range locs {
			rows[i] = thumbRow{target: l.meta.target, time: l.meta.time, seq: l.meta.seq, seg: id,
				off: int64(headerSize + l.offset), length: int(l.meta.length)}
		}
		if err := s.cat.insertThumbs(rows); err != nil {
			s.log.Error("history: indexing recovered thumbnails", "segment", name, "err", err)
		}
	}
	if kind == kindThumbnails {
		// Rows of entries past what the file keeps (a tail cut above, a
		// file shorter than the catalog thought) are gone pictures.
		if n, err := s.cat.dropThumbsOutside(id, seg.size.Load()); err != nil {
			s.log.Error("history: forgetting thumbnails past a segment's end", "segment", name, "err", err)
		} else if n > 0 {
			s.log.Warn("history: forgot thumbnails past a segment's end", "segment", name, "thumbnails", n)
		}
	}
	// The catalog vouches for the ids of a segment it sealed, and of
	// every segment after a migration from version 1 (which did not
	// sync its ids) only once they were checked.
	if row == nil || !row.sealed || s.cat.migrated {
		switch kind {
		case kindVectors:
			for i := range int(seg.count.Load()) {
				m := parseMeta(seg.record(i))
				refs.targets[m.target] = true
				if m.label != 0 {
					refs.labels[m.label] = true
				}
			}
		case kindThumbnails:
			for _, l := range locs {
				refs.targets[l.meta.target] = true
			}
		}
	}
	s.segs = append(s.segs, seg)
	return catalogued
}

// addBad keeps a segment that cannot be read in the list, so that it is
// counted and deleted in time, never read.
func (s *Store) addBad(kind byte, id uint64, row *segRow) {
	bad := &segment{segHeader: segHeader{kind: kind, id: id}, path: filepath.Join(s.cfg.Dir, segmentName(kind, id)), sealed: true}
	bad.bad = true
	if st, err := os.Lstat(bad.path); err == nil {
		bad.size.Store(st.Size())
		bad.last.Store(st.ModTime().UnixNano())
	}
	if row != nil && row.last != 0 {
		bad.last.Store(row.last)
	}
	s.segs = append(s.segs, bad)
}

// Close stops the writer after it has written what was queued, seals the
// active segments and releases the files. Add after Close drops.
func (s *Store) Close() error {
	s.sendMu.Lock()
	was := s.closed.Swap(true)
	s.sendMu.Unlock()
	if was {
		return nil
	}
	close(s.quit)
	<-s.done
	return s.closeFiles()
}

func (s *Store) closeFiles() error {
	s.mu.Lock()
	segs := s.segs
	s.segs = nil
	s.mu.Unlock()
	// Searches still running hold their segments: wait for them, without
	// mu, which they take again to name what they found.
	for _, seg := range segs {
		seg.readers.Lock()
		seg.close()
	}
	for _, d := range s.doomed {
		d.seg.readers.Lock()
		s.finishDelete(d.seg, d.why)
	}
	s.doomed = nil
	err := s.cat.close()
	s.lock.Close()
	return err
}

// Wants says what Add would keep of a frame of target t captured at at:
// the embedding (at most one per Every, every frame that changed a state)
// and, with it, a thumbnail (at most one per ThumbnailEvery, and at every
// state change). While history is paused (a full disk) or closed it
// wants nothing. It changes nothing, and costs a map lookup.
func (s *Store) Wants(t Target, at time.Time, changed bool) Want {
	if s.paused.Load() || s.closed.Load() {
		return Want{}
	}
	return s.due(t, at, changed)
}

func (s *Store) due(t Target, at time.Time, changed bool) Want {
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	return s.wants(s.admit[t], at, changed)
}

func (s *Store) wants(a *admission, at time.Time, changed bool) Want {
	if a == nil {
		return Want{Record: true, Thumbnail: true}
	}
	rec := changed || due(a.record, at, s.cfg.Every)
	return Want{Record: rec, Thumbnail: rec && (changed || due(a.thumb, at, s.cfg.ThumbnailEvery))}
}

// due is true when at is an interval after last, less a twentieth: frames
// come with jitter, and one a few milliseconds early is taken rather than
// skipping a whole interval (the daemon's classify_every does the same).
// A clock that went back starts over.
func due(last, at time.Time, every time.Duration) bool {
	if last.IsZero() {
		return true
	}
	d := at.Sub(last)
	return d < 0 || d >= every-every/20
}

// Add queues a record for the writer and returns at once. It returns an
// error only for an invalid record (a caller's bug); a record that is not
// due, a full queue or a paused store (full disk) drops it silently, and
// Status counts each case.
func (s *Store) Add(r Record) error {
	// Most frames are not due: they cost a map look-up and no more.
	if !s.due(r.Target, r.Time, r.Changed).Record {
		s.skipped.Add(1)
		return nil
	}
	if err := r.validate(); err != nil {
		s.invalid.Add(1)
		return fmt.Errorf("history: record of %.80s: %w", r.Target, err)
	}
	s.admitMu.Lock()
	a := s.admit[r.Target]
	w := s.wants(a, r.Time, r.Changed)
	if w.Record {
		if a == nil {
			a = &admission{}
			s.admit[r.Target] = a
		}
		a.record = r.Time
		if w.Thumbnail && r.Thumbnail != nil {
			a.thumb = r.Time
		}
	}
	s.admitMu.Unlock()
	switch {
	case !w.Record:
		s.skipped.Add(1)
		return nil
	case s.closed.Load():
		s.dropped.Add(1)
		return nil
	case s.paused.Load():
		s.droppedPaused.Add(1)
		return nil
	}
	if !w.Thumbnail {
		r.Thumbnail = nil
	}
	size := int64(4*len(r.Embedding)+len(r.Thumbnail)+len(r.Model)+len(r.TopLabel)+len(r.Camera)+len(r.Region)) + 128
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if s.closed.Load() {
		s.dropped.Add(1)
		return nil
	}
	if s.queued.Add(size) > s.cfg.QueueBytes {
		s.queued.Add(-size)
		s.dropped.Add(1)
		return nil
	}
	r.Embedding = slices.Clone(r.Embedding)
	select {
	case s.queue <- item{rec: r, size: size}:
	default:
		s.queued.Add(-size)
		s.dropped.Add(1)
	}
	return nil
}

// Flush waits until the writer has written everything Add queued before
// the call and has applied retention and max_bytes.
func (s *Store) Flush(ctx context.Context) error {
	if s.closed.Load() {
		return errors.New("history: closed")
	}
	b := make(chan struct{})
	select {
	case s.queue <- item{barrier: b}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errors.New("history: closed")
	}
	select {
	case <-b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errors.New("history: closed")
	}
}

// run is the writer: every file write and catalog change happens here.
func (s *Store) run() {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	batch := make([]item, 0, 256)
	for {
		select {
		case it := <-s.queue:
			batch = append(batch[:0], it)
		more:
			for len(batch) < cap(batch) {
				select {
				case it := <-s.queue:
					batch = append(batch, it)
				default:
					break more
				}
			}
			s.writeBatch(batch)
		case <-tick.C:
			s.maintain()
		case <-s.quit:
			for {
				select {
				case it := <-s.queue:
					s.writeBatch([]item{it})
					continue
				default:
				}
				break
			}
			s.sealActive()
			return
		}
	}
}

func (s *Store) writeBatch(batch []item) {
	if err := s.intern(batch); err != nil {
		s.pause(err)
	}
	for _, it := range batch {
		if it.barrier != nil {
			s.flushWrites()
			s.maintain()
			close(it.barrier)
			continue
		}
		s.queued.Add(-it.size)
		if s.paused.Load() {
			s.droppedPaused.Add(1)
			continue
		}
		s.appendRecord(&it.rec)
	}
	s.flushWrites()
}

// intern gives every new target and label of the batch its catalog id
// before any record refers to it.
func (s *Store) intern(batch []item) error {
	var ts []Target
	var ls []string
	for _, it := range batch {
		if it.barrier != nil {
			continue
		}
		if _, ok := s.targetIDs[it.rec.Target]; !ok && !slices.Contains(ts, it.rec.Target) {
			ts = append(ts, it.rec.Target)
		}
		if l := it.rec.TopLabel; l != "" {
			if _, ok := s.labelIDs[l]; !ok && !slices.Contains(ls, l) {
				ls = append(ls, l)
			}
		}
	}
	if len(ts) == 0 && len(ls) == 0 {
		return nil
	}
	tids, lids, err := s.cat.intern(ts, ls)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range ts {
		s.targetIDs[t], s.targets[tids[i]] = tids[i], t
	}
	for i, l := range ls {
		s.labelIDs[l], s.labels[lids[i]] = lids[i], l
	}
	return nil
}

func (s *Store) appendRecord(r *Record) {
	tid, ok := s.targetIDs[r.Target]
	if !ok {
		s.droppedPaused.Add(1) // interning failed and paused the store
		return
	}
	t := r.Time.UnixNano()
	dim := len(r.Embedding)
	seg := s.activeVec
	rs := recordSize(dim)
	if seg == nil || seg.model != r.Model || seg.dim != dim ||
		seg.size.Load()+int64(len(s.pending)+rs) > seg.capacity || s.spanExceeded(seg, t) {
		s.flushWrites()
		if s.paused.Load() {
			s.droppedPaused.Add(1)
			return
		}
		s.sealVec()
		var err error
		if seg, err = s.newSegment(kindVectors, r.Model, dim); err != nil {
			s.pause(err)
			s.droppedPaused.Add(1)
			return
		}
		s.activeVec = seg
	}
	vec := make([]uint16, dim)
	n := 0.0
	for _, x := range r.Embedding {
		n += float64(x) * float64(x)
	}
	inv := 1 / math.Sqrt(n)
	for i, x := range r.Embedding {
		vec[i] = toHalf(float32(float64(x) * inv))
	}
	m := recMeta{time: t, seq: r.Seq, labelsVersion: r.LabelsVersion, target: tid, label: s.labelIDs[r.TopLabel]}
	if r.Changed {
		m.flags |= flagChanged
	}
	off := len(s.pending)
	s.pending = slices.Grow(s.pending, rs)[:off+rs]
	clear(s.pending[off:])
	encodeRecord(s.pending[off:], m, vec)
	s.pendingN++
	s.pendingT = append(s.pendingT, t)
	if r.Thumbnail != nil {
		s.pendingJPEG = append(s.pendingJPEG, pendingThumb{target: tid, time: t, seq: r.Seq, jpeg: r.Thumbnail})
	}
}

// spanExceeded: a segment covers at most segmentSpan of capture time, so
// that retention, which deletes whole segments, stays close to exact.
func (s *Store) spanExceeded(seg *segment, t int64) bool {
	if seg.count.Load() == 0 && len(s.pendingT) == 0 {
		return false
	}
	first := seg.first.Load()
	if seg.count.Load() == 0 {
		first = s.pendingT[0]
	}
	return t-first > int64(s.cfg.segmentSpan())
}

func (s *Store) appendThumb(p pendingThumb) {
	entry := encodeThumb(thumbMeta{length: uint32(len(p.jpeg)), target: p.target, time: p.time, seq: p.seq}, p.jpeg)
	seg := s.activeThumb
	t := p.time
	if seg == nil || seg.size.Load()+int64(len(entry)) > seg.capacity ||
		(seg.count.Load() > 0 && t-seg.first.Load() > int64(s.cfg.segmentSpan())) {
		if int64(headerSize+len(entry)) > s.cfg.segmentBytes() {
			return // larger than a segment: not kept
		}
		s.sealThumb()
		var err error
		if seg, err = s.newSegment(kindThumbnails, "", 0); err != nil {
			s.pause(err)
			return
		}
		s.activeThumb = seg
	}
	off := seg.size.Load()
	if err := writeAll(seg, entry, off); err != nil {
		s.pause(err)
		return
	}
	seg.widen(t, seg.count.Load() == 0)
	seg.size.Store(off + int64(len(entry)))
	seg.count.Add(1)
	s.thumbRows = append(s.thumbRows, thumbRow{target: p.target, time: t, seq: p.seq, seg: seg.id, off: off, length: len(p.jpeg)})
}

// writeAll appends b to the segment at off; on failure it cuts the file
// back to off so that no partial record stays behind.
func writeAll(seg *segment, b []byte, off int64) error {
	if _, err := seg.file.WriteAt(b, off); err != nil {
		if terr := seg.file.Truncate(off); terr != nil {
			return fmt.Errorf("%w (and cutting back: %v)", err, terr)
		}
		return err
	}
	return nil
}

// flushWrites writes the pending records, then their thumbnails, and
// indexes the thumbnails: a thumbnail is never kept without its record.
func (s *Store) flushWrites() {
	if seg := s.activeVec; seg != nil && s.pendingN > 0 {
		off := seg.size.Load()
		if err := writeAll(seg, s.pending, off); err != nil {
			s.pause(err) // drops and counts the pending records
		} else {
			for i, t := range s.pendingT {
				seg.widen(t, i == 0 && seg.count.Load() == 0)
			}
			seg.size.Store(off + int64(len(s.pending)))
			seg.count.Add(int64(s.pendingN))
			s.stored.Add(uint64(s.pendingN))
		}
	}
	s.pending, s.pendingN, s.pendingT = s.pending[:0], 0, s.pendingT[:0]
	for _, p := range s.pendingJPEG {
		if !s.paused.Load() {
			s.appendThumb(p)
		}
	}
	clear(s.pendingJPEG)
	s.pendingJPEG = s.pendingJPEG[:0]
	if len(s.thumbRows) > 0 {
		if err := s.cat.insertThumbs(s.thumbRows); err != nil {
			// The entries are on disk; the next Open indexes them again
			// from the unsealed segment.
			s.pause(fmt.Errorf("catalog: %w", err))
		}
		s.thumbRows = s.thumbRows[:0]
	}
}

func (s *Store) newSegment(kind byte, model string, dim int) (*segment, error) {
	now := s.cfg.Now().UnixNano()
	capacity := s.cfg.segmentBytes()
	if kind == kindVectors {
		rs := int64(recordSize(dim))
		capacity = headerSize + (capacity-headerSize)/rs*rs
	}
	var seg *segment
	for attempt := 0; ; attempt++ {
		id, err := s.cat.insertSegment(segRow{kind: kind, model: model, dim: dim, created: now})
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		seg, err = createSegment(s.cfg.Dir, segHeader{kind: kind, id: id, created: now, dim: dim, model: model}, capacity)
		if err == nil {
			break
		}
		s.cat.deleteSegment(id, kind)
		if !errors.Is(err, fs.ErrExist) || attempt == 3 {
			return nil, err
		}
		// A file of that name appeared since Open (which keeps the ids of
		// those it found from new segments): the catalog gives the next.
		s.log.Warn("history: a segment file already has the new segment's name; taking the next id", "segment", segmentName(kind, id))
	}
	// The file's name must survive a power loss as its synced data does.
	if err := syncDir(s.cfg.Dir); err != nil {
		s.log.Warn("history: syncing the directory", "err", err)
	}
	s.mu.Lock()
	i, _ := slices.BinarySearchFunc(s.segs, segKey{seg.id, seg.kind}, compareSeg)
	s.segs = slices.Insert(s.segs, i, seg)
	s.mu.Unlock()
	return seg, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Store) sealVec() {
	if s.activeVec != nil {
		s.seal(s.activeVec)
		s.activeVec = nil
	}
}

func (s *Store) sealThumb() {
	if s.activeThumb != nil {
		s.seal(s.activeThumb)
		s.activeThumb = nil
	}
}

func (s *Store) sealActive() {
	s.flushWrites()
	s.sealVec()
	s.sealThumb()
}

// seal makes a segment read-only: synced, its counts in the catalog, so
// that the next Open trusts them instead of reading it through.
func (s *Store) seal(seg *segment) {
	if err := seg.file.Sync(); err != nil {
		s.log.Warn("history: syncing a segment", "segment", filepath.Base(seg.path), "err", err)
	} else if err := s.cat.sealSegment(seg.id, seg.kind, seg.count.Load(), seg.size.Load(), seg.first.Load(), seg.last.Load()); err != nil {
		s.log.Warn("history: sealing a segment", "segment", filepath.Base(seg.path), "err", err)
	}
	seg.file.Close()
	seg.file = nil
	seg.sealed = true
}

// pause stops writing after a failure (a full disk, most likely) until
// PauseRetry has passed; what arrives meanwhile is dropped and counted.
func (s *Store) pause(err error) {
	reason := err.Error()
	if diskFull(err) {
		reason = "disk full: " + reason
	}
	if len(reason) > 300 {
		reason = reason[:300]
	}
	s.retryAt = time.Now().Add(s.cfg.PauseRetry)
	if s.paused.Swap(true) {
		s.dropPending()
		return
	}
	s.pauses.Add(1)
	s.reasonMu.Lock()
	s.pauseReason = reason
	s.reasonMu.Unlock()
	s.log.Error("history: paused, records are dropped until writing works again (classification goes on)",
		"reason", reason, "retry_in", s.cfg.PauseRetry)
	// A segment that failed mid-write is not appended to again.
	s.dropPending()
	s.sealVec()
	s.sealThumb()
}

func (s *Store) dropPending() {
	s.droppedPaused.Add(uint64(s.pendingN))
	s.pending, s.pendingN, s.pendingT = s.pending[:0], 0, s.pendingT[:0]
	clear(s.pendingJPEG)
	s.pendingJPEG = s.pendingJPEG[:0]
}

// diskFull says whether err is the file system refusing more bytes: no
// space, a quota, or a file-size limit, from a segment write or SQLite.
func diskFull(err error) bool {
	full := func(e syscall.Errno) bool { return e == syscall.ENOSPC || e == syscall.EDQUOT || e == syscall.EFBIG }
	var errno syscall.Errno
	if errors.As(err, &errno) && full(errno) {
		return true
	}
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrFull || full(se.SystemErrno))
}

// maintain runs about once a second and at every Flush: it resumes a
// paused store when its retry time has come, applies retention and
// max_bytes, and syncs the active segments every ten seconds.
func (s *Store) maintain() {
	if s.paused.Load() && !time.Now().Before(s.retryAt) {
		s.paused.Store(false)
		s.log.Info("history: resuming")
	}
	s.reapDoomed()
	s.enforceLimits()
	if time.Since(s.lastSync) >= 10*time.Second {
		s.lastSync = time.Now()
		for _, seg := range []*segment{s.activeVec, s.activeThumb} {
			if seg != nil {
				seg.file.Sync()
			}
		}
	}
}

// enforceLimits deletes whole segments: those whose newest record is past
// retention, then the oldest while the files exceed max_bytes.
func (s *Store) enforceLimits() {
	cutoff := s.cfg.Now().Add(-s.cfg.Retention).UnixNano()
	s.mu.RLock()
	order := slices.Clone(s.segs)
	s.mu.RUnlock()
	// Oldest first by newest capture time; empty active segments last.
	slices.SortStableFunc(order, func(a, b *segment) int {
		ea, eb := a.count.Load() == 0 && !a.bad, b.count.Load() == 0 && !b.bad
		if ea != eb {
			if ea {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.last.Load(), b.last.Load())
	})
	var total int64
	for _, seg := range order {
		total += seg.size.Load()
	}
	for _, seg := range order {
		empty := seg.count.Load() == 0 && !seg.bad
		switch {
		case empty && seg.sealed:
			s.deleteSegment(seg, "empty")
		case empty:
			continue
		case seg.last.Load() < cutoff:
			s.deleteSegment(seg, "retention")
		case total > s.cfg.MaxBytes:
			s.deleteSegment(seg, "max_bytes")
		default:
			continue
		}
		total -= seg.size.Load()
	}
}

// deleteSegment removes a segment: from searches first, then its file,
// then its catalog rows, so that a crash midway leaves at worst a row
// without a file, which the next Open forgets. Searches that took the
// segment before keep reading its mapping: the rest waits, in maintain,
// until the last has let go.
func (s *Store) deleteSegment(seg *segment, why string) {
	if seg == s.activeVec {
		s.flushWrites()
		s.activeVec = nil
	}
	if seg == s.activeThumb {
		s.activeThumb = nil
	}
	s.mu.Lock()
	s.segs = slices.DeleteFunc(s.segs, func(x *segment) bool { return x == seg })
	s.mu.Unlock()
	if !seg.readers.TryLock() {
		s.doomed = append(s.doomed, doomedSegment{seg, why})
		return
	}
	s.finishDelete(seg, why)
}

// reapDoomed finishes the deletions whose segments no search reads now.
func (s *Store) reapDoomed() {
	s.doomed = slices.DeleteFunc(s.doomed, func(d doomedSegment) bool {
		if !d.seg.readers.TryLock() {
			return false
		}
		s.finishDelete(d.seg, d.why)
		return true
	})
}

// finishDelete unmaps a segment no search reads (the caller holds its
// readers lock) and removes its file and rows.
func (s *Store) finishDelete(seg *segment, why string) {
	seg.close()
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("history: deleting a segment", "segment", filepath.Base(seg.path), "err", err)
	}
	if err := s.cat.deleteSegment(seg.id, seg.kind); err != nil {
		s.log.Error("history: forgetting a deleted segment", "segment", filepath.Base(seg.path), "err", err)
	}
	s.log.Debug("history: segment deleted", "segment", filepath.Base(seg.path), "why", why,
		"records", seg.count.Load(), "bytes", seg.size.Load())
}

// Status reports the store's state; it reads counters and the segment
// list, never the files.
func (s *Store) Status() Status {
	st := Status{
		Dir: s.cfg.Dir, MaxBytes: s.cfg.MaxBytes, Paused: s.paused.Load(), Pauses: s.pauses.Load(),
		Stored: s.stored.Load(), Skipped: s.skipped.Load(), Dropped: s.dropped.Load(),
		DroppedPaused: s.droppedPaused.Load(), Invalid: s.invalid.Load(), QueuedBytes: s.queued.Load(),
		TornBytes: s.tornBytes, Kernel: kernelName, Models: []ModelCount{},
	}
	if st.Paused {
		s.reasonMu.Lock()
		st.PauseReason = s.pauseReason
		s.reasonMu.Unlock()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	models := make(map[string]*ModelCount)
	for _, seg := range s.segs {
		st.Segments++
		st.Bytes += seg.size.Load()
		if seg.bad {
			st.BadSegments++
			continue
		}
		n := seg.count.Load()
		if n == 0 {
			continue
		}
		if seg.kind == kindThumbnails {
			st.Thumbnails += n
			continue
		}
		st.Records += n
		first, last := time.Unix(0, seg.first.Load()), time.Unix(0, seg.last.Load())
		if st.Oldest.IsZero() || first.Before(st.Oldest) {
			st.Oldest = first
		}
		if last.After(st.Newest) {
			st.Newest = last
		}
		m := models[seg.model]
		if m == nil {
			m = &ModelCount{Model: seg.model, Dim: seg.dim}
			models[seg.model] = m
		}
		m.Records += n
	}
	for _, m := range models {
		st.Models = append(st.Models, *m)
	}
	slices.SortFunc(st.Models, func(a, b ModelCount) int { return cmp.Compare(a.Model, b.Model) })
	for _, name := range []string{"history.db", "history.db-wal"} {
		if fi, err := os.Stat(filepath.Join(s.cfg.Dir, name)); err == nil {
			st.CatalogBytes += fi.Size()
		}
	}
	return st
}

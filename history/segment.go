package history

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// segment is one open segment file. Its bytes are mapped read-only: the
// scan reads them where they lie in the page cache, so the heap does not
// grow with the store, and the active segment is mapped at its full
// capacity up front so that appends never remap it under a search.
type segment struct {
	segHeader
	path     string
	file     *os.File // open for appending while active; nil once sealed
	data     []byte   // the mapping, header included
	capacity int64    // bytes the segment may grow to
	sealed   bool     // writer-owned
	bad      bool     // failed validation at Open: kept on disk, never read
	// readers is held for reading by each search that scans the segment
	// and for writing by its deletion, which unmaps it: a search takes it
	// under Store.mu, from the segment list, so no search takes it once
	// deletion has begun.
	readers sync.RWMutex

	// size is the bytes written and intact (header included); count the
	// records (vectors) or entries (thumbnails) in them. A search reads
	// count, then only the bytes it covers. first and last bound the
	// capture times (Unix ns) of what it holds.
	size        atomic.Int64
	count       atomic.Int64
	first, last atomic.Int64
}

func segmentName(kind byte, id uint64) string {
	return fmt.Sprintf("%c-%016x.seg", kind, id)
}

// parseSegmentName returns the kind and id a segment file name encodes.
func parseSegmentName(name string) (byte, uint64, bool) {
	if len(name) != len("v-0000000000000000.seg") || !strings.HasSuffix(name, ".seg") || name[1] != '-' {
		return 0, 0, false
	}
	if name[0] != kindVectors && name[0] != kindThumbnails {
		return 0, 0, false
	}
	// Lower-case hex only, as segmentName writes it: another spelling of
	// an id would be opened by the name segmentName gives, and fail.
	for _, c := range name[2:18] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, 0, false
		}
	}
	id, err := strconv.ParseUint(name[2:18], 16, 64)
	if err != nil || id == 0 || id > math.MaxInt64 {
		return 0, 0, false
	}
	return name[0], id, true
}

// openRegular opens an existing file that must be a regular file of at
// most limit bytes, without following a symlink or blocking on a FIFO.
func openRegular(path string, flag int, limit int64) (*os.File, int64, error) {
	f, err := os.OpenFile(path, flag|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case !st.Mode().IsRegular():
		err = errors.New("not a regular file")
	case st.Size() > limit:
		err = fmt.Errorf("%d bytes, more than a segment may hold (%d)", st.Size(), limit)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// createSegment makes a new, empty active segment file.
func createSegment(dir string, h segHeader, capacity int64) (*segment, error) {
	path := filepath.Join(dir, segmentName(h.kind, h.id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(encodeHeader(h), 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	s := &segment{segHeader: h, path: path, file: f, capacity: capacity}
	if err := s.mapFile(f, capacity); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	s.size.Store(headerSize)
	s.first.Store(0)
	return s, nil
}

func (s *segment) mapFile(f *os.File, length int64) error {
	data, err := unix.Mmap(int(f.Fd()), 0, int(length), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", s.path, err)
	}
	s.data = data
	return nil
}

// loadSegment opens an existing segment file, checks its header against
// what the catalog says (row, nil if the catalog does not know it) and
// finds the intact records. A segment that was still being written when
// the process died (not sealed) is read record by record and its torn
// tail cut off; a sealed one is trusted up to the count the catalog has.
// It returns the bytes cut off.
func loadSegment(dir string, kind byte, id uint64, row *segRow, limit int64) (*segment, []thumbLoc, int64, error) {
	path := filepath.Join(dir, segmentName(kind, id))
	f, size, err := openRegular(path, os.O_RDWR, limit)
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	head := make([]byte, headerSize)
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, nil, 0, fmt.Errorf("header: %w", err)
	}
	h, err := parseHeader(head)
	if err != nil {
		return nil, nil, 0, err
	}
	switch {
	case h.kind != kind || h.id != id:
		return nil, nil, 0, fmt.Errorf("header says %s", segmentName(h.kind, h.id))
	case row != nil && (row.model != h.model || row.dim != h.dim):
		return nil, nil, 0, fmt.Errorf("header says model %.40q dimension %d, the catalog %.40q %d", h.model, h.dim, row.model, row.dim)
	}
	s := &segment{segHeader: h, path: path, sealed: true}
	if err := s.mapFile(f, size); err != nil {
		return nil, nil, 0, err
	}
	body := s.data[headerSize:]
	var good int64
	var locs []thumbLoc
	trusted := row != nil && row.sealed
	switch kind {
	case kindVectors:
		rs := recordSize(h.dim)
		n := int64(len(body) / rs)
		if trusted && row.records <= n {
			n = row.records
		} else {
			n = int64(validRecords(body, rs))
		}
		good = n * int64(rs)
		s.count.Store(n)
		if trusted && n == row.records {
			s.first.Store(row.first)
			s.last.Store(row.last)
		} else {
			s.scanTimes(rs)
		}
	case kindThumbnails:
		// An unsealed thumbnail segment is read entry by entry: the
		// catalog rows of its last entries may not have been committed,
		// and are rebuilt from what is returned here.
		if trusted && row.bytes >= headerSize && row.bytes <= int64(len(s.data)) {
			good = row.bytes - headerSize
			s.count.Store(row.records)
			s.first.Store(row.first)
			s.last.Store(row.last)
			break
		}
		var n int
		locs, n = validThumbs(body)
		good = int64(n)
		s.count.Store(int64(len(locs)))
		for i, l := range locs {
			s.widen(l.meta.time, i == 0)
		}
	}
	torn := int64(len(body)) - good
	s.size.Store(headerSize + good)
	if torn > 0 {
		// Cutting the tail keeps the file what the records say; the
		// mapping beyond the new end is never read.
		if err := f.Truncate(headerSize + good); err != nil {
			s.unmap()
			return nil, nil, 0, fmt.Errorf("cutting torn tail: %w", err)
		}
	}
	return s, locs, torn, nil
}

func (s *segment) scanTimes(rs int) {
	n := int(s.count.Load())
	for i := range n {
		m := parseMeta(s.data[headerSize+i*rs:])
		s.widen(m.time, i == 0)
	}
}

// widen extends the segment's time range to t.
func (s *segment) widen(t int64, firstOne bool) {
	if firstOne || t < s.first.Load() {
		s.first.Store(t)
	}
	if firstOne || t > s.last.Load() {
		s.last.Store(t)
	}
}

// record returns record i of a vector segment.
func (s *segment) record(i int) []byte {
	rs := recordSize(s.dim)
	off := headerSize + i*rs
	return s.data[off : off+rs]
}

func (s *segment) unmap() {
	if s.data != nil {
		unix.Munmap(s.data)
		s.data = nil
	}
}

// close releases the file and the mapping; the caller makes sure no
// search still reads it.
func (s *segment) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.unmap()
}

package promptcache

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// The segment file format, version 1. All integers are little-endian.
//
//	header, 64 bytes:
//	   0  magic "CLIPDPC\x00"
//	   8  version      uint32  1
//	  12  dim          uint32  embedding length, 1..MaxDim
//	  16  count        uint32  entries, 1..
//	  20  index CRC    uint32  CRC-32C of the index
//	  24  model key    [32]byte
//	  56  header CRC   uint32  CRC-32C of bytes 0..55
//	  60  reserved     uint32  0
//	index, count × 32 bytes, one per entry, in record order:
//	   0  prompt hash  [16]byte  the first 16 bytes of SHA-256(prompt)
//	  16  used         int64     Unix seconds the entry was last written or read
//	  24  length       uint32    record length
//	  28  record CRC   uint32    CRC-32C of the record
//	records, back to back:
//	   0  prompt length uint32
//	   4  prompt bytes
//	      dim × float32 (IEEE 754), a unit vector
//
// The file is exactly header + index + records long. A reader checks the
// header and index checksums before trusting any offset, and a record's
// checksum, hash, length and values before returning it.
const (
	magic       = "CLIPDPC\x00"
	version     = 1
	headerSize  = 64
	indexEntry  = 32
	hashSize    = 16
	recordFixed = 4 // the prompt length field
)

// Bounds on what a segment may hold; a file outside them is not ours.
const (
	// MaxDim is the longest embedding stored (CLIP models use 512 to 1280).
	MaxDim = 16384
	// MaxPromptBytes is the longest prompt stored; the labels parser
	// bounds lines at 64 KiB, and CLIP reads only 77 tokens of a prompt.
	MaxPromptBytes = 64 << 10
	// maxSegmentBytes bounds one file (writers stay under segmentTarget).
	maxSegmentBytes = 32 << 20
	// unitTolerance is how far from 1 a stored embedding's squared norm
	// may be: model.EncodePrompts normalizes in float64 and stores float32,
	// which leaves about 1e-7.
	unitTolerance = 1e-3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ModelKey identifies a text encoder (see model.PromptCacheKey).
type ModelKey [32]byte

// Entry is one prompt's embedding.
type Entry struct {
	Prompt    string
	Embedding []float32
	// Used is when the entry was last written or refreshed, at one
	// second's resolution; eviction removes the least recently used.
	Used time.Time
}

// promptHash names a prompt in the index.
func promptHash(prompt string) [hashSize]byte {
	sum := sha256.Sum256([]byte(prompt))
	return [hashSize]byte(sum[:hashSize])
}

// header is a decoded, checked segment header.
type header struct {
	dim, count int
	indexCRC   uint32
	model      ModelKey
}

// indexItem is one decoded index entry with its record's place.
type indexItem struct {
	hash   [hashSize]byte
	used   int64
	offset int64
	length int
	crc    uint32
}

// segmentIndex is a checked header and index: every offset lies inside the
// file, and the records exactly fill it.
type segmentIndex struct {
	header
	items  []indexItem
	byHash map[[hashSize]byte]int
}

// recordLen is the length of a record holding prompt with dim values.
func recordLen(promptBytes, dim int) int { return recordFixed + promptBytes + 4*dim }

// parseHeader checks the fixed header of a segment of fileSize bytes.
func parseHeader(b []byte, fileSize int64) (header, error) {
	var h header
	if len(b) < headerSize || fileSize < headerSize {
		return h, fmt.Errorf("%d bytes is shorter than a header", fileSize)
	}
	if string(b[:8]) != magic {
		return h, errors.New("not a prompt cache segment (bad magic)")
	}
	if got := crc32.Checksum(b[:56], castagnoli); got != binary.LittleEndian.Uint32(b[56:]) {
		return h, errors.New("header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != version {
		return h, fmt.Errorf("format version %d, want %d", v, version)
	}
	if r := binary.LittleEndian.Uint32(b[60:]); r != 0 {
		return h, errors.New("reserved header field is not zero")
	}
	dim := binary.LittleEndian.Uint32(b[12:])
	count := binary.LittleEndian.Uint32(b[16:])
	if dim == 0 || dim > MaxDim {
		return h, fmt.Errorf("dimension %d outside 1..%d", dim, MaxDim)
	}
	minRecord := int64(recordLen(1, int(dim)))
	if count == 0 || int64(count) > (fileSize-headerSize)/(indexEntry+minRecord) {
		return h, fmt.Errorf("%d entries cannot fit in %d bytes", count, fileSize)
	}
	h.dim, h.count = int(dim), int(count)
	h.indexCRC = binary.LittleEndian.Uint32(b[20:])
	copy(h.model[:], b[24:56])
	return h, nil
}

// parseIndex checks the index of a segment whose header is h and decodes
// the place of every record.
func parseIndex(b []byte, h header, fileSize int64) (*segmentIndex, error) {
	if len(b) != h.count*indexEntry {
		return nil, fmt.Errorf("index is %d bytes, want %d", len(b), h.count*indexEntry)
	}
	if crc32.Checksum(b, castagnoli) != h.indexCRC {
		return nil, errors.New("index checksum mismatch")
	}
	s := &segmentIndex{header: h, items: make([]indexItem, h.count), byHash: make(map[[hashSize]byte]int, h.count)}
	offset := int64(headerSize + h.count*indexEntry)
	minLen, maxLen := recordLen(1, h.dim), recordLen(MaxPromptBytes, h.dim)
	for i := range s.items {
		e := b[i*indexEntry:]
		it := indexItem{
			hash:   [hashSize]byte(e[:hashSize]),
			used:   int64(binary.LittleEndian.Uint64(e[16:])),
			offset: offset,
			length: int(binary.LittleEndian.Uint32(e[24:])),
			crc:    binary.LittleEndian.Uint32(e[28:]),
		}
		if it.length < minLen || it.length > maxLen {
			return nil, fmt.Errorf("entry %d: record length %d outside %d..%d", i, it.length, minLen, maxLen)
		}
		if _, dup := s.byHash[it.hash]; dup {
			return nil, fmt.Errorf("entry %d: prompt listed twice", i)
		}
		offset += int64(it.length)
		if offset > fileSize {
			return nil, fmt.Errorf("entry %d: record ends at %d, past the end of the file (%d bytes; truncated?)", i, offset, fileSize)
		}
		s.byHash[it.hash] = i
		s.items[i] = it
	}
	if offset != fileSize {
		return nil, fmt.Errorf("records end at %d but the file has %d bytes", offset, fileSize)
	}
	return s, nil
}

// parseRecord checks record b of item it and decodes it.
func parseRecord(b []byte, it indexItem, dim int) (Entry, error) {
	if len(b) != it.length {
		return Entry{}, fmt.Errorf("record is %d bytes, want %d", len(b), it.length)
	}
	if crc32.Checksum(b, castagnoli) != it.crc {
		return Entry{}, errors.New("record checksum mismatch")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < 1 || n > MaxPromptBytes || recordLen(n, dim) != len(b) {
		return Entry{}, fmt.Errorf("prompt length %d does not fit a %d-byte record of dimension %d", n, len(b), dim)
	}
	prompt := string(b[recordFixed : recordFixed+n])
	if promptHash(prompt) != it.hash {
		return Entry{}, errors.New("prompt does not match its hash")
	}
	emb := make([]float32, dim)
	vals := b[recordFixed+n:]
	for k := range emb {
		emb[k] = math.Float32frombits(binary.LittleEndian.Uint32(vals[4*k:]))
	}
	if err := checkUnit(emb); err != nil {
		return Entry{}, err
	}
	return Entry{Prompt: prompt, Embedding: emb, Used: time.Unix(it.used, 0)}, nil
}

// checkUnit accepts finite vectors of unit length, what the cache stores.
func checkUnit(v []float32) error {
	var sq float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("embedding has a non-finite value")
		}
		sq += f * f
	}
	if math.Abs(sq-1) > unitTolerance {
		return fmt.Errorf("embedding is not a unit vector (squared norm %.6g)", sq)
	}
	return nil
}

// checkEntry says why e cannot be stored in a segment of dimension dim.
func checkEntry(e Entry, dim int) error {
	switch {
	case len(e.Prompt) == 0:
		return errors.New("empty prompt")
	case len(e.Prompt) > MaxPromptBytes:
		return fmt.Errorf("prompt of %d bytes is longer than %d", len(e.Prompt), MaxPromptBytes)
	case len(e.Embedding) != dim:
		return fmt.Errorf("prompt %q: embedding has %d values, want %d", e.Prompt, len(e.Embedding), dim)
	}
	if err := checkUnit(e.Embedding); err != nil {
		return fmt.Errorf("prompt %q: %w", e.Prompt, err)
	}
	return nil
}

// encodeSegment writes entries (distinct prompts, each checked with
// checkEntry) as one segment file.
func encodeSegment(model ModelKey, dim int, entries []Entry) ([]byte, error) {
	if dim < 1 || dim > MaxDim {
		return nil, fmt.Errorf("dimension %d outside 1..%d", dim, MaxDim)
	}
	if len(entries) == 0 {
		return nil, errors.New("no entries")
	}
	size := headerSize + len(entries)*indexEntry
	for _, e := range entries {
		if err := checkEntry(e, dim); err != nil {
			return nil, err
		}
		size += recordLen(len(e.Prompt), dim)
	}
	if size > maxSegmentBytes {
		return nil, fmt.Errorf("segment of %d bytes exceeds %d", size, maxSegmentBytes)
	}
	buf := make([]byte, size)
	index := buf[headerSize : headerSize+len(entries)*indexEntry]
	rec := buf[headerSize+len(index):]
	seen := make(map[[hashSize]byte]bool, len(entries))
	for i, e := range entries {
		h := promptHash(e.Prompt)
		if seen[h] {
			return nil, fmt.Errorf("prompt %q given twice", e.Prompt)
		}
		seen[h] = true
		n := recordLen(len(e.Prompt), dim)
		r := rec[:n]
		binary.LittleEndian.PutUint32(r, uint32(len(e.Prompt)))
		copy(r[recordFixed:], e.Prompt)
		vals := r[recordFixed+len(e.Prompt):]
		for k, x := range e.Embedding {
			binary.LittleEndian.PutUint32(vals[4*k:], math.Float32bits(x))
		}
		ie := index[i*indexEntry:]
		copy(ie, h[:])
		binary.LittleEndian.PutUint64(ie[16:], uint64(e.Used.Unix()))
		binary.LittleEndian.PutUint32(ie[24:], uint32(n))
		binary.LittleEndian.PutUint32(ie[28:], crc32.Checksum(r, castagnoli))
		rec = rec[n:]
	}
	copy(buf, magic)
	binary.LittleEndian.PutUint32(buf[8:], version)
	binary.LittleEndian.PutUint32(buf[12:], uint32(dim))
	binary.LittleEndian.PutUint32(buf[16:], uint32(len(entries)))
	binary.LittleEndian.PutUint32(buf[20:], crc32.Checksum(index, castagnoli))
	copy(buf[24:56], model[:])
	binary.LittleEndian.PutUint32(buf[56:], crc32.Checksum(buf[:56], castagnoli))
	return buf, nil
}

// Segment is a decoded segment file.
type Segment struct {
	Model   ModelKey
	Dim     int
	Entries []Entry
}

// DecodeSegment checks and decodes a whole segment file held in memory,
// as compaction reads them. Every check of the incremental reader applies.
func DecodeSegment(data []byte) (*Segment, error) {
	size := int64(len(data))
	if size > maxSegmentBytes {
		return nil, fmt.Errorf("%d bytes exceeds the segment bound %d", size, maxSegmentBytes)
	}
	h, err := parseHeader(data, size)
	if err != nil {
		return nil, err
	}
	idx, err := parseIndex(data[headerSize:headerSize+h.count*indexEntry], h, size)
	if err != nil {
		return nil, err
	}
	seg := &Segment{Model: h.model, Dim: h.dim, Entries: make([]Entry, len(idx.items))}
	for i, it := range idx.items {
		e, err := parseRecord(data[it.offset:it.offset+int64(it.length)], it, h.dim)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		seg.Entries[i] = e
	}
	return seg, nil
}

// EncodeSegment is the inverse of DecodeSegment.
func EncodeSegment(s *Segment) ([]byte, error) { return encodeSegment(s.Model, s.Dim, s.Entries) }

package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unicode/utf8"
)

// On-disk format of segment files. Both kinds start with a headerSize-byte
// header; every integer is little-endian.
//
//	header:  [0:8] magic  [8:12] version  [12:16] dim  [16:20] record size
//	         [20:24] model length  [24:32] segment id  [32:40] created (Unix ns)
//	         [40:40+model length] model hash  ...zeros...  [508:512] CRC-32C of [0:508]
//
// A vector segment ("v-<id>.seg") then holds fixed-size records, so record
// i is at headerSize + i*recordSize(dim):
//
//	record:  [0:8] capture time (Unix ns)  [8:16] seq  [16:24] labels version
//	         [24:28] target id  [28:32] top label id  [32:34] flags  [34:36] 0
//	         [36:40] CRC-32C of [0:36] and [40:]  [40:40+2*dim] binary16 embedding
//	         zeros up to a multiple of 8
//
// A thumbnail segment ("t-<id>.seg") holds variable-size entries:
//
//	entry:   [0:4] JPEG length  [4:8] target id  [8:16] capture time  [16:24] seq
//	         [24:28] CRC-32C of [0:24] and the JPEG  [28:32] 0  [32:] JPEG, zeros up to
//	         a multiple of 8
//
// Files are only appended to; a record or entry whose CRC does not match is
// where a crash tore the tail, and everything from it on is discarded.
const (
	headerSize     = 512
	formatVersion  = 1
	recHeaderSize  = 40
	thumbEntrySize = 32
	// Bounds for hostile or damaged headers: CLIP embeddings are 512 to
	// 1024 values, and model hashes are short hex strings.
	maxDim      = 4096
	maxModelLen = 256
	// MaxThumbnailBytes bounds one stored picture.
	MaxThumbnailBytes = 256 << 10

	kindVectors    byte = 'v'
	kindThumbnails byte = 't'
)

var (
	magicVectors    = [8]byte{'C', 'L', 'I', 'P', 'D', 'V', 'E', 'C'}
	magicThumbnails = [8]byte{'C', 'L', 'I', 'P', 'D', 'T', 'H', 'B'}
	castagnoli      = crc32.MakeTable(crc32.Castagnoli)
)

const flagChanged = 1 << 0

// segHeader is what a segment's header says about it.
type segHeader struct {
	kind    byte
	id      uint64
	created int64
	dim     int // 0 for thumbnail segments
	model   string
}

// recordSize is the size of one vector record of dim values.
func recordSize(dim int) int {
	return (recHeaderSize + 2*dim + 7) &^ 7
}

func encodeHeader(h segHeader) []byte {
	b := make([]byte, headerSize)
	if h.kind == kindVectors {
		copy(b[0:8], magicVectors[:])
		binary.LittleEndian.PutUint32(b[16:20], uint32(recordSize(h.dim)))
	} else {
		copy(b[0:8], magicThumbnails[:])
	}
	binary.LittleEndian.PutUint32(b[8:12], formatVersion)
	binary.LittleEndian.PutUint32(b[12:16], uint32(h.dim))
	binary.LittleEndian.PutUint32(b[20:24], uint32(len(h.model)))
	binary.LittleEndian.PutUint64(b[24:32], h.id)
	binary.LittleEndian.PutUint64(b[32:40], uint64(h.created))
	copy(b[40:], h.model)
	binary.LittleEndian.PutUint32(b[508:512], crc32.Checksum(b[:508], castagnoli))
	return b
}

// parseHeader validates a segment header and returns what it says.
func parseHeader(b []byte) (segHeader, error) {
	var h segHeader
	if len(b) < headerSize {
		return h, fmt.Errorf("header: %d bytes, want %d", len(b), headerSize)
	}
	b = b[:headerSize]
	switch [8]byte(b[0:8]) {
	case magicVectors:
		h.kind = kindVectors
	case magicThumbnails:
		h.kind = kindThumbnails
	default:
		return h, errors.New("header: not a clipd history segment (bad magic)")
	}
	if got, want := binary.LittleEndian.Uint32(b[508:512]), crc32.Checksum(b[:508], castagnoli); got != want {
		return h, errors.New("header: checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != formatVersion {
		return h, fmt.Errorf("header: format version %d, this clipd reads %d", v, formatVersion)
	}
	dim := binary.LittleEndian.Uint32(b[12:16])
	recSize := binary.LittleEndian.Uint32(b[16:20])
	modelLen := binary.LittleEndian.Uint32(b[20:24])
	h.id = binary.LittleEndian.Uint64(b[24:32])
	h.created = int64(binary.LittleEndian.Uint64(b[32:40]))
	if modelLen > maxModelLen {
		return h, fmt.Errorf("header: model hash of %d bytes (at most %d)", modelLen, maxModelLen)
	}
	h.model = string(b[40 : 40+modelLen])
	if !utf8.ValidString(h.model) {
		return h, errors.New("header: model hash is not UTF-8")
	}
	switch h.kind {
	case kindVectors:
		if dim < 1 || dim > maxDim {
			return h, fmt.Errorf("header: dimension %d (1 to %d)", dim, maxDim)
		}
		h.dim = int(dim)
		if int(recSize) != recordSize(h.dim) {
			return h, fmt.Errorf("header: record size %d for dimension %d, want %d", recSize, dim, recordSize(h.dim))
		}
		if modelLen == 0 {
			return h, errors.New("header: no model hash")
		}
	case kindThumbnails:
		if dim != 0 || recSize != 0 || modelLen != 0 {
			return h, errors.New("header: thumbnail segment with vector fields set")
		}
	}
	return h, nil
}

// recMeta is a vector record without its embedding.
type recMeta struct {
	time          int64
	seq           uint64
	labelsVersion uint64
	target        uint32
	label         uint32
	flags         uint16
}

// encodeRecord writes one record into dst (recordSize(len(vec)) bytes,
// which must be zero beyond the embedding).
func encodeRecord(dst []byte, m recMeta, vec []uint16) {
	binary.LittleEndian.PutUint64(dst[0:8], uint64(m.time))
	binary.LittleEndian.PutUint64(dst[8:16], m.seq)
	binary.LittleEndian.PutUint64(dst[16:24], m.labelsVersion)
	binary.LittleEndian.PutUint32(dst[24:28], m.target)
	binary.LittleEndian.PutUint32(dst[28:32], m.label)
	binary.LittleEndian.PutUint16(dst[32:34], m.flags)
	binary.LittleEndian.PutUint16(dst[34:36], 0)
	for i, h := range vec {
		binary.LittleEndian.PutUint16(dst[recHeaderSize+2*i:], h)
	}
	binary.LittleEndian.PutUint32(dst[36:40], recordCRC(dst))
}

func recordCRC(rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, rec[:36])
	return crc32.Update(c, castagnoli, rec[recHeaderSize:])
}

// parseMeta reads a record's fields without checking it; the scan uses it
// on records already validated when the segment was opened or written.
func parseMeta(rec []byte) recMeta {
	_ = rec[recHeaderSize-1]
	return recMeta{
		time:          int64(binary.LittleEndian.Uint64(rec[0:8])),
		seq:           binary.LittleEndian.Uint64(rec[8:16]),
		labelsVersion: binary.LittleEndian.Uint64(rec[16:24]),
		target:        binary.LittleEndian.Uint32(rec[24:28]),
		label:         binary.LittleEndian.Uint32(rec[28:32]),
		flags:         binary.LittleEndian.Uint16(rec[32:34]),
	}
}

// recordValid says whether rec (one whole record) is intact.
func recordValid(rec []byte) bool {
	return len(rec) >= recHeaderSize && binary.LittleEndian.Uint32(rec[36:40]) == recordCRC(rec) &&
		binary.LittleEndian.Uint16(rec[34:36]) == 0
}

// validRecords counts the intact records at the start of body (a segment
// after its header): the first torn or damaged one ends the count.
func validRecords(body []byte, recSize int) int {
	n := 0
	for off := 0; off+recSize <= len(body); off += recSize {
		if !recordValid(body[off : off+recSize]) {
			break
		}
		n++
	}
	return n
}

// thumbMeta is a thumbnail entry's header.
type thumbMeta struct {
	length uint32
	target uint32
	time   int64
	seq    uint64
}

// thumbEntryLen is the bytes an entry with a JPEG of n bytes takes.
func thumbEntryLen(n int) int { return (thumbEntrySize + n + 7) &^ 7 }

// encodeThumb returns the entry for one picture.
func encodeThumb(m thumbMeta, jpeg []byte) []byte {
	b := make([]byte, thumbEntryLen(len(jpeg)))
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(jpeg)))
	binary.LittleEndian.PutUint32(b[4:8], m.target)
	binary.LittleEndian.PutUint64(b[8:16], uint64(m.time))
	binary.LittleEndian.PutUint64(b[16:24], m.seq)
	copy(b[thumbEntrySize:], jpeg)
	binary.LittleEndian.PutUint32(b[24:28], thumbCRC(b[:24], jpeg))
	return b
}

func thumbCRC(head, jpeg []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, head), castagnoli, jpeg)
}

// parseThumb reads the entry at the start of b and returns its header, its
// JPEG (a subslice of b) and the bytes the entry takes; an error means b
// does not start with an intact entry.
func parseThumb(b []byte) (thumbMeta, []byte, int, error) {
	var m thumbMeta
	if len(b) < thumbEntrySize {
		return m, nil, 0, errors.New("thumbnail entry: truncated header")
	}
	m.length = binary.LittleEndian.Uint32(b[0:4])
	m.target = binary.LittleEndian.Uint32(b[4:8])
	m.time = int64(binary.LittleEndian.Uint64(b[8:16]))
	m.seq = binary.LittleEndian.Uint64(b[16:24])
	if m.length == 0 || m.length > MaxThumbnailBytes {
		return m, nil, 0, fmt.Errorf("thumbnail entry: length %d (1 to %d)", m.length, MaxThumbnailBytes)
	}
	n := thumbEntryLen(int(m.length))
	if len(b) < n {
		return m, nil, 0, errors.New("thumbnail entry: truncated")
	}
	jpeg := b[thumbEntrySize : thumbEntrySize+int(m.length)]
	if binary.LittleEndian.Uint32(b[28:32]) != 0 || binary.LittleEndian.Uint32(b[24:28]) != thumbCRC(b[:24], jpeg) {
		return m, nil, 0, errors.New("thumbnail entry: checksum mismatch")
	}
	return m, jpeg, n, nil
}

// thumbLoc is where one intact entry lies in a thumbnail segment's body.
type thumbLoc struct {
	meta   thumbMeta
	offset int // of the entry, from the start of the body
}

// validThumbs lists the intact entries at the start of body and returns
// the bytes they take; the first torn or damaged entry ends the list.
func validThumbs(body []byte) ([]thumbLoc, int) {
	var locs []thumbLoc
	off := 0
	for off < len(body) {
		m, _, n, err := parseThumb(body[off:])
		if err != nil {
			break
		}
		locs = append(locs, thumbLoc{meta: m, offset: off})
		off += n
	}
	return locs, off
}

package history

import (
	"bytes"
	"testing"
)

// FuzzSegment feeds arbitrary bytes to the segment parsers: the header,
// the record scan and the thumbnail scan never panic, never claim more
// than they were given, and what they accept re-encodes to the same bytes.
func FuzzSegment(f *testing.F) {
	vh := encodeHeader(segHeader{kind: kindVectors, id: 7, created: 1, dim: 4, model: "model"})
	rec := make([]byte, recordSize(4))
	encodeRecord(rec, recMeta{time: 5, seq: 6, target: 1}, []uint16{1, 2, 3, 4})
	f.Add(append(append([]byte{}, vh...), rec...))
	f.Add(append(encodeHeader(segHeader{kind: kindThumbnails, id: 8}), encodeThumb(thumbMeta{length: 3, target: 1, time: 2, seq: 3}, []byte("abc"))...))
	f.Add([]byte("CLIPDVEC"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			// The body parsers must cope with any bytes on their own.
			validRecords(b, recordSize(int(len(b)%64)+1))
			validThumbs(b)
			return
		}
		if !bytes.Equal(encodeHeader(h), b[:headerSize]) && h.kind == kindVectors {
			// Bytes after the model hash are not checked beyond the CRC,
			// which covers them; so a valid header re-encodes exactly.
			t.Fatalf("header %+v re-encodes differently", h)
		}
		body := b[headerSize:]
		switch h.kind {
		case kindVectors:
			rs := recordSize(h.dim)
			n := validRecords(body, rs)
			if n*rs > len(body) {
				t.Fatalf("%d records of %d bytes in %d bytes", n, rs, len(body))
			}
			for i := range n {
				r := body[i*rs : (i+1)*rs]
				m := parseMeta(r)
				vec := make([]uint16, h.dim)
				for d := range vec {
					vec[d] = uint16(r[recHeaderSize+2*d]) | uint16(r[recHeaderSize+2*d+1])<<8
				}
				again := make([]byte, rs)
				encodeRecord(again, m, vec)
				if !bytes.Equal(again[:recHeaderSize+2*h.dim], r[:recHeaderSize+2*h.dim]) {
					t.Fatalf("record %d re-encodes differently", i)
				}
			}
		case kindThumbnails:
			locs, n := validThumbs(body)
			if n > len(body) {
				t.Fatalf("%d bytes of entries in %d", n, len(body))
			}
			for _, l := range locs {
				m, jpeg, size, err := parseThumb(body[l.offset:])
				if err != nil || m != l.meta || !bytes.Equal(encodeThumb(m, jpeg)[:thumbEntrySize+len(jpeg)], body[l.offset:l.offset+thumbEntrySize+len(jpeg)]) || size != thumbEntryLen(len(jpeg)) {
					t.Fatalf("entry at %d does not re-encode", l.offset)
				}
			}
		}
	})
}

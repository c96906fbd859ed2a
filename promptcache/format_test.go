package promptcache

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// unitVec is a deterministic unit vector for prompt, so that any process
// can tell a right embedding from a wrong one.
func unitVec(prompt string, dim int) []float32 {
	f := fnv.New64a()
	f.Write([]byte(prompt))
	rng := rand.New(rand.NewPCG(f.Sum64(), uint64(dim)))
	v := make([]float32, dim)
	var sq float64
	for k := range v {
		v[k] = float32(rng.NormFloat64())
		sq += float64(v[k]) * float64(v[k])
	}
	for k := range v {
		v[k] = float32(float64(v[k]) / math.Sqrt(sq))
	}
	return v
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

var testKey = ModelKey{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

func testEntries(n, dim int, used time.Time) []Entry {
	out := make([]Entry, n)
	for i := range out {
		p := "a photo of a thing number " + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i/26%10))
		out[i] = Entry{Prompt: p, Embedding: unitVec(p, dim), Used: used.Add(time.Duration(i) * time.Second)}
	}
	return out
}

func mustEncode(t testing.TB, key ModelKey, dim int, entries []Entry) []byte {
	t.Helper()
	data, err := encodeSegment(key, dim, entries)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSegmentRoundTrip(t *testing.T) {
	entries := testEntries(40, 16, time.Unix(1_700_000_000, 0))
	entries = append(entries, Entry{Prompt: "ein Foto einer Straße — 街の写真", Embedding: unitVec("u", 16), Used: time.Unix(5, 0)})
	data := mustEncode(t, testKey, 16, entries)
	seg, err := DecodeSegment(data)
	if err != nil {
		t.Fatal(err)
	}
	if seg.Model != testKey || seg.Dim != 16 || len(seg.Entries) != len(entries) {
		t.Fatalf("decoded model %x dim %d, %d entries", seg.Model[:4], seg.Dim, len(seg.Entries))
	}
	for i, e := range seg.Entries {
		w := entries[i]
		if e.Prompt != w.Prompt || !sameBits(e.Embedding, w.Embedding) || e.Used.Unix() != w.Used.Unix() {
			t.Fatalf("entry %d: got %q used %v, want %q used %v", i, e.Prompt, e.Used, w.Prompt, w.Used)
		}
	}
	again, err := EncodeSegment(seg)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("re-encoding differs (err %v)", err)
	}
}

// Every byte of a segment is covered by a checksum, a fixed value or a
// length check, so any single corrupted byte is refused.
func TestDecodeRefusesEveryFlippedByte(t *testing.T) {
	data := mustEncode(t, testKey, 4, testEntries(3, 4, time.Unix(1_700_000_000, 0)))
	for i := range data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			if _, err := DecodeSegment(bad); err == nil {
				t.Fatalf("byte %d ^ %#x accepted", i, mask)
			}
		}
	}
}

func TestDecodeRefusesTruncatedAndExtended(t *testing.T) {
	data := mustEncode(t, testKey, 8, testEntries(5, 8, time.Unix(1_700_000_000, 0)))
	for n := 0; n < len(data); n++ {
		if _, err := DecodeSegment(data[:n]); err == nil {
			t.Fatalf("segment truncated to %d of %d bytes accepted", n, len(data))
		}
	}
	if _, err := DecodeSegment(append(bytes.Clone(data), 0)); err == nil || !strings.Contains(err.Error(), "file has") {
		t.Fatalf("segment with a trailing byte: %v", err)
	}
}

func TestEncodeRefusesWhatCannotBeRead(t *testing.T) {
	good := unitVec("p", 4)
	for _, c := range []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"none", nil, "no entries"},
		{"empty prompt", []Entry{{Prompt: "", Embedding: good}}, "empty prompt"},
		{"long prompt", []Entry{{Prompt: strings.Repeat("a", MaxPromptBytes+1), Embedding: good}}, "longer than"},
		{"wrong dim", []Entry{{Prompt: "p", Embedding: []float32{1}}}, "1 values, want 4"},
		{"not unit", []Entry{{Prompt: "p", Embedding: []float32{1, 1, 0, 0}}}, "not a unit vector"},
		{"zero", []Entry{{Prompt: "p", Embedding: []float32{0, 0, 0, 0}}}, "not a unit vector"},
		{"NaN", []Entry{{Prompt: "p", Embedding: []float32{float32(math.NaN()), 0, 0, 0}}}, "non-finite"},
		{"twice", []Entry{{Prompt: "p", Embedding: good}, {Prompt: "p", Embedding: good}}, "given twice"},
	} {
		_, err := encodeSegment(testKey, 4, c.entries)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

// FuzzDecodeSegment feeds arbitrary bytes to the segment parser: it must
// never panic or allocate beyond the file's size, and whatever it accepts
// must be exactly what encoding the result gives back (nothing in an
// accepted file goes unchecked).
func FuzzDecodeSegment(f *testing.F) {
	valid := mustEncode(f, testKey, 4, testEntries(3, 4, time.Unix(1_700_000_000, 0)))
	f.Add(valid)
	f.Add(valid[:headerSize])
	f.Add(valid[:len(valid)-1])
	f.Add(mustEncode(f, ModelKey{}, 1, []Entry{{Prompt: "x", Embedding: []float32{1}}}))
	f.Add([]byte(magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Random bytes rarely get past the checksums; with them
		// recomputed, the fuzzer reaches the checks behind them.
		for _, d := range [][]byte{data, fixChecksums(data)} {
			seg, err := DecodeSegment(d)
			if err != nil {
				continue
			}
			again, err := EncodeSegment(seg)
			if err != nil {
				t.Fatalf("decoded segment does not encode: %v", err)
			}
			if !bytes.Equal(again, d) {
				t.Fatalf("accepted %d bytes that do not re-encode to themselves", len(d))
			}
		}
	})
}

// fixChecksums returns a copy of data with every checksum it has room for
// recomputed over the bytes as they are.
func fixChecksums(data []byte) []byte {
	d := bytes.Clone(data)
	if len(d) < headerSize {
		return d
	}
	count := int(binary.LittleEndian.Uint32(d[16:]))
	if count >= 0 && count <= (len(d)-headerSize)/indexEntry {
		index := d[headerSize : headerSize+count*indexEntry]
		off := headerSize + len(index)
		for i := 0; i < count; i++ {
			e := index[i*indexEntry:]
			n := int(binary.LittleEndian.Uint32(e[24:]))
			if n < 0 || off+n > len(d) {
				break
			}
			binary.LittleEndian.PutUint32(e[28:], crc32.Checksum(d[off:off+n], castagnoli))
			off += n
		}
		binary.LittleEndian.PutUint32(d[20:], crc32.Checksum(index, castagnoli))
	}
	binary.LittleEndian.PutUint32(d[56:], crc32.Checksum(d[:56], castagnoli))
	return d
}

package trt

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"
)

func TestCopyOut(t *testing.T) {
	src := []byte("a serialized plan")
	got, err := copyOut(unsafe.Pointer(&src[0]), uint64(len(src)), maxEngineBytes, "engine plan")
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("%q, %v", got, err)
	}
	src[0] = 'A'
	if got[0] != 'a' {
		t.Error("the copy shares the source's memory")
	}
	// A length above the bound fails before anything is read or
	// allocated: the pointer is never touched.
	for _, n := range []uint64{maxEngineBytes + 1, 1 << 63, ^uint64(0)} {
		if _, err := copyOut(nil, n, maxEngineBytes, "engine plan"); err == nil || !strings.Contains(err.Error(), "more than the 8.0 GiB") {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if got, err := copyOut(nil, 0, maxEngineBytes, "timing cache"); got != nil || err != nil {
		t.Errorf("empty: %q, %v", got, err)
	}
	if _, err := copyOut(nil, 3, maxEngineBytes, "timing cache"); err == nil {
		t.Error("a nil pointer with a length was copied")
	}
}

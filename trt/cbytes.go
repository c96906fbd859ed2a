package trt

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/clipd/clipd/internal/safefile"
)

// copyOut copies the n bytes at p, memory the shim owns, into Go memory.
// C.GoBytes takes a C int, which truncates a size_t: a plan or timing
// cache above 2 GiB (a ViT-L/14 FP32 plan, within maxEngineBytes) would
// panic on a negative length or come back cut short. limit bounds what is
// copied, checked before the allocation.
func copyOut(p unsafe.Pointer, n uint64, limit int64, what string) ([]byte, error) {
	if n > uint64(limit) || n > math.MaxInt {
		return nil, fmt.Errorf("trt: the %s is %d bytes, more than the %s clipd accepts", what, n, safefile.FormatBytes(limit))
	}
	if n == 0 {
		return nil, nil
	}
	if p == nil {
		return nil, fmt.Errorf("trt: the shim returned no %s but a length of %d", what, n)
	}
	out := make([]byte, n)
	copy(out, unsafe.Slice((*byte)(p), n))
	return out, nil
}

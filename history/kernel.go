package history

// #cgo CFLAGS: -O3 -std=gnu11
// #include "kernel.h"
import "C"

import (
	"unsafe"
)

// kernelName is the scoring loop this CPU runs: "avx2+f16c" on x86-64 with
// those extensions, else "portable" (plain C).
var kernelName = C.GoString(C.hist_kernel())

// dots scores the vectors at base[idx[i]*stride+voff:] (dim binary16
// values each) against the nq queries packed in q (nq*dim float32): out
// gets nq dot products and the squared norm per vector, so len(out) must be
// at least len(idx)*(nq+1). base must stay mapped for the call; the caller
// guarantees every index is within it.
func dots(base unsafe.Pointer, stride, voff int, idx []int32, dim int, q []float32, nq int, out []float32, portable bool) {
	if len(idx) == 0 {
		return
	}
	if nq < 1 || len(q) < nq*dim || len(out) < len(idx)*(nq+1) {
		panic("history: dots called with short buffers")
	}
	b, ix, qq, o := (*C.uint8_t)(base), (*C.int32_t)(unsafe.Pointer(&idx[0])), (*C.float)(unsafe.Pointer(&q[0])), (*C.float)(unsafe.Pointer(&out[0]))
	if portable {
		C.hist_dots_portable(b, C.size_t(stride), C.size_t(voff), ix, C.int(len(idx)), C.int(dim), qq, C.int(nq), o)
		return
	}
	C.hist_dots(b, C.size_t(stride), C.size_t(voff), ix, C.int(len(idx)), C.int(dim), qq, C.int(nq), o)
}

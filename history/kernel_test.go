package history

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func TestHalfRoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		f := fromHalf(uint16(h))
		if f != f { // NaN keeps being NaN, payload aside
			if g := fromHalf(toHalf(f)); g == g {
				t.Fatalf("NaN %#04x came back as %v", h, g)
			}
			continue
		}
		if math.IsInf(float64(f), 0) {
			continue // saturates by design, checked below
		}
		if got := toHalf(f); got != uint16(h) {
			t.Fatalf("toHalf(fromHalf(%#04x) = %v) = %#04x", h, f, got)
		}
	}
	if got := fromHalf(toHalf(float32(math.Inf(1)))); got != 65504 {
		t.Errorf("+Inf saturates to %v, want 65504", got)
	}
	if got := fromHalf(toHalf(1e6)); got != 65504 {
		t.Errorf("1e6 saturates to %v, want 65504", got)
	}
}

// TestHalfRounding checks round-to-nearest-even against the two halves
// that bracket a value, in float64.
func TestHalfRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200000 {
		var x float32
		switch i % 3 {
		case 0:
			x = float32(r.NormFloat64() * 0.05) // embedding components
		case 1:
			x = float32(r.NormFloat64() * 1e-5) // subnormal halves
		default:
			x = float32((r.Float64()*2 - 1) * 60000)
		}
		h := toHalf(x)
		got := float64(fromHalf(h))
		// The neighbours of h toward and away from zero.
		lo, hi := float64(fromHalf(h-1)), float64(fromHalf(h+1))
		if h&0x7fff == 0 {
			lo = -float64(fromHalf(h + 1))
		}
		err := math.Abs(got - float64(x))
		if math.Abs(lo-float64(x)) < err || (h&0x7fff != 0x7bff && math.Abs(hi-float64(x)) < err) {
			t.Fatalf("toHalf(%v) = %v, a neighbour (%v, %v) is nearer", x, got, lo, hi)
		}
		if math.Abs(lo-float64(x)) == err && h&1 == 1 || h&0x7fff != 0x7bff && math.Abs(hi-float64(x)) == err && h&1 == 1 {
			t.Fatalf("toHalf(%v) = %#04x: a tie must round to even", x, h)
		}
	}
}

// TestKernel compares both scoring loops with a float64 reference over
// dimensions that exercise every tail and query counts beyond one block.
func TestKernel(t *testing.T) {
	t.Logf("kernel on this CPU: %s", kernelName)
	r := rand.New(rand.NewPCG(5, 6))
	for _, dim := range []int{1, 7, 8, 15, 16, 17, 64, 511, 512, 768} {
		for _, nq := range []int{1, 2, 10, 33, 70} {
			const n = 37
			stride := recordSize(dim)
			buf := make([]byte, n*stride+64)
			vecs := make([][]float64, n)
			for i := range n {
				v := randomUnit(r, dim)
				vecs[i] = make([]float64, dim)
				for d, x := range v {
					h := toHalf(x)
					binary.LittleEndian.PutUint16(buf[i*stride+recHeaderSize+2*d:], h)
					vecs[i][d] = float64(fromHalf(h))
				}
			}
			q := make([]float32, 0, nq*dim)
			for range nq {
				q = append(q, randomUnit(r, dim)...)
			}
			idx := []int32{36, 0, 5, 5, 17, 35}
			for _, portable := range []bool{false, true} {
				out := make([]float32, len(idx)*(nq+1))
				dots(unsafe.Pointer(&buf[0]), stride, recHeaderSize, idx, dim, q, nq, out, portable)
				for i, k := range idx {
					var ss float64
					for _, x := range vecs[k] {
						ss += x * x
					}
					if d := math.Abs(float64(out[i*(nq+1)+nq]) - ss); d > 1e-5 {
						t.Fatalf("dim %d nq %d portable %v: vector %d squared norm %v, want %v", dim, nq, portable, k, out[i*(nq+1)+nq], ss)
					}
					for j := range nq {
						var want float64
						for d, x := range vecs[k] {
							want += x * float64(q[j*dim+d])
						}
						if d := math.Abs(float64(out[i*(nq+1)+j]) - want); d > 1e-5 {
							t.Fatalf("dim %d nq %d portable %v: vector %d query %d dot %v, want %v", dim, nq, portable, k, j, out[i*(nq+1)+j], want)
						}
					}
				}
			}
		}
	}
}

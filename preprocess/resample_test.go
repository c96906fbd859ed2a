package preprocess

import (
	"math/rand/v2"
	"testing"
)

// naiveHorizontal and naiveVertical are the passes one tap at a time, as
// Pillow's C loops are written; the unrolled passes must match them for
// every tap count, including the remainders after groups of four.
func naiveHorizontal(dst, src []byte, w *axisWeights, channels int) {
	for i, x0 := range w.start {
		k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
		for ch := 0; ch < channels; ch++ {
			acc := roundHalf
			for j, c := range k {
				acc += int32(src[(x0+j)*channels+ch]) * c
			}
			dst[i*channels+ch] = clip8(acc)
		}
	}
}

func naiveVertical(dst, tmp []byte, rowLen, rowOffset int, w *axisWeights) {
	for i, y0 := range w.start {
		k := w.coeffs[i*w.ksize : i*w.ksize+w.count[i]]
		for x := 0; x < rowLen; x++ {
			acc := roundHalf
			for j, c := range k {
				acc += int32(tmp[(y0-rowOffset+j)*rowLen+x]) * c
			}
			dst[i*rowLen+x] = clip8(acc)
		}
	}
}

func TestResamplePassesMatchOneTapAtATime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, inSize := range []int{1, 3, 7, 50, 720} {
		for _, outSize := range []int{1, 2, 5, 13, 224} {
			var w axisWeights
			n := min(outSize, 224)
			w.compute(inSize, outSize, 0, n)
			for _, channels := range []int{1, 3, 4} {
				src := make([]byte, inSize*channels)
				for i := range src {
					src[i] = byte(rng.IntN(256))
				}
				got, want := make([]byte, n*channels), make([]byte, n*channels)
				horizontal(got, src, &w, channels)
				naiveHorizontal(want, src, &w, channels)
				if string(got) != string(want) {
					t.Fatalf("horizontal %d→%d, %d channels: differs from one tap at a time", inSize, outSize, channels)
				}
				rowLen := 5 * channels
				tmp := make([]byte, inSize*rowLen)
				for i := range tmp {
					tmp[i] = byte(rng.IntN(256))
				}
				got, want = make([]byte, n*rowLen), make([]byte, n*rowLen)
				vertical(got, tmp, rowLen, 0, &w, make([]int32, rowLen))
				naiveVertical(want, tmp, rowLen, 0, &w)
				if string(got) != string(want) {
					t.Fatalf("vertical %d→%d, row of %d: differs from one tap at a time", inSize, outSize, rowLen)
				}
			}
		}
	}
}

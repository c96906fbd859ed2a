package labels

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
)

// hashEncoder stands in for the CLIP text tower, which lives in another
// package: it maps each prompt deterministically to a unit vector and records
// what it was asked to encode.
type hashEncoder struct {
	dim int

	mu      sync.Mutex
	calls   int
	encoded []string
}

func (h *hashEncoder) LogitScale() float32 { return 100 }

func (h *hashEncoder) EncodePrompts(_ context.Context, prompts []string) ([][]float32, error) {
	h.mu.Lock()
	h.calls++
	h.encoded = append(h.encoded, prompts...)
	h.mu.Unlock()
	out := make([][]float32, len(prompts))
	for i, p := range prompts {
		f := fnv.New64a()
		f.Write([]byte(p))
		rng := rand.New(rand.NewPCG(f.Sum64(), 1))
		v := make([]float32, h.dim)
		var sq float64
		for k := range v {
			v[k] = float32(rng.NormFloat64())
			sq += float64(v[k]) * float64(v[k])
		}
		for k := range v {
			v[k] /= float32(math.Sqrt(sq))
		}
		out[i] = v
	}
	return out, nil
}

func (h *hashEncoder) stats() (calls int, encoded []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls, append([]string(nil), h.encoded...)
}

package synth

import "math"

// rng is a small splitmix64 generator. The renderer owns its randomness
// (instead of math/rand) so that a scene's bytes depend only on the seed and
// the options, never on the Go release or on global state.
type rng struct{ s uint64 }

func newRNG(seed uint64, stream uint64) rng {
	r := rng{s: seed ^ (stream * 0xD1B54A32D192ED03)}
	r.next()
	return r
}

func (r *rng) next() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// rangef returns a value in [lo, hi).
func (r *rng) rangef(lo, hi float64) float64 { return lo + (hi-lo)*r.float() }

// intn returns a value in [0, n).
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) angle() float64 { return r.float() * 2 * math.Pi }

package labels

import (
	"fmt"
	"math"
	"sync"
)

// PromptEncoder turns prompts into text embeddings. The model packages
// implement it (tokenize, EncodeTexts, normalize); labels depends only on this
// interface so that it never imports model code.
type PromptEncoder interface {
	// EncodePrompts returns one L2-normalized embedding per prompt.
	EncodePrompts(prompts []string) ([][]float32, error)
}

// Embedder computes label weights and remembers prompt embeddings by prompt
// text, so that editing one label in a file with eighty prompts per label
// encodes only the prompts that changed. It is safe for concurrent use.
type Embedder struct {
	enc PromptEncoder

	mu    sync.Mutex
	cache map[string][]float32
	dim   int
}

// NewEmbedder wraps enc with a prompt cache.
func NewEmbedder(enc PromptEncoder) *Embedder {
	return &Embedder{enc: enc, cache: make(map[string][]float32)}
}

// Embed fills the Weight of every label of s. Only prompts not already
// cached are sent to the encoder, in one batch. s must not yet be visible to
// readers.
func (e *Embedder) Embed(s *Set) error {
	e.mu.Lock()
	defer e.mu.Unlock()

	var missing []string
	for _, p := range s.Prompts() {
		if _, ok := e.cache[p]; !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		embs, err := e.enc.EncodePrompts(missing)
		if err != nil {
			return fmt.Errorf("%s: encoding %d prompts: %w", s.File, len(missing), err)
		}
		if len(embs) != len(missing) {
			return fmt.Errorf("%s: encoder returned %d embeddings for %d prompts", s.File, len(embs), len(missing))
		}
		for i, emb := range embs {
			if e.dim == 0 {
				e.dim = len(emb)
			}
			if len(emb) != e.dim || len(emb) == 0 {
				return fmt.Errorf("%s: prompt %q: embedding has %d values, want %d", s.File, missing[i], len(emb), e.dim)
			}
		}
		for i, emb := range embs {
			e.cache[missing[i]] = emb
		}
	}

	for i := range s.Labels {
		l := &s.Labels[i]
		embs := make([][]float32, len(l.Prompts))
		for j, p := range l.Prompts {
			embs[j] = e.cache[p]
		}
		w, err := Ensemble(embs)
		if err != nil {
			return fmt.Errorf("%s:%d: label %q: %w", s.File, l.Line, l.Name, err)
		}
		l.Weight = w
	}
	return nil
}

// Retain forgets cached prompts that none of sets uses, so that the cache
// does not grow without bound as files are edited over months.
func (e *Embedder) Retain(sets ...*Set) {
	keep := make(map[string]bool)
	for _, s := range sets {
		if s == nil {
			continue
		}
		for _, l := range s.Labels {
			for _, p := range l.Prompts {
				keep[p] = true
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for p := range e.cache {
		if !keep[p] {
			delete(e.cache, p)
		}
	}
}

// Cached reports how many prompt embeddings are held.
func (e *Embedder) Cached() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.cache)
}

// Ensemble is CLIP's prompt ensembling (zeroshot_classifier in the CLIP
// notebooks): normalize each prompt embedding, average them, and normalize
// the mean. Sums are kept in float64 so the order of prompts does not change
// the result beyond float32 rounding.
func Ensemble(embs [][]float32) ([]float32, error) {
	if len(embs) == 0 {
		return nil, fmt.Errorf("no prompt embeddings")
	}
	dim := len(embs[0])
	sum := make([]float64, dim)
	for i, emb := range embs {
		if len(emb) != dim {
			return nil, fmt.Errorf("prompt embedding %d has %d values, want %d", i, len(emb), dim)
		}
		var sq float64
		for _, v := range emb {
			sq += float64(v) * float64(v)
		}
		if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
			return nil, fmt.Errorf("prompt embedding %d has norm %v", i, math.Sqrt(sq))
		}
		inv := 1 / math.Sqrt(sq)
		for k, v := range emb {
			sum[k] += float64(v) * inv
		}
	}
	var sq float64
	for _, v := range sum {
		sq += v * v
	}
	if sq == 0 {
		return nil, fmt.Errorf("prompt embeddings cancel out (mean is zero)")
	}
	inv := 1 / math.Sqrt(sq)
	out := make([]float32, dim)
	for k, v := range sum {
		out[k] = float32(v * inv)
	}
	return out, nil
}

package labels

import (
	"context"
	"fmt"
	"sync"

	"github.com/clipd/clipd/engine"
)

// PromptEncoder turns prompts into text embeddings. The model packages
// implement it (tokenize, EncodeTexts, normalize); labels depends only on this
// interface so that it never imports model code.
type PromptEncoder interface {
	// EncodePrompts returns one L2-normalized embedding per prompt.
	EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error)
	// LogitScale multiplies cosine similarities before the softmax.
	LogitScale() float32
}

// Embedder computes label weights and remembers prompt embeddings by prompt
// text, so that editing one label in a file with eighty prompts per label
// encodes only the prompts that changed. It is safe for concurrent use.
type Embedder struct {
	enc PromptEncoder

	mu    sync.Mutex
	cache map[string][]float32
	dim   int
	// live holds each watcher's current sets, whose prompts a prune keeps.
	live map[*Watcher][]*Set
}

// NewEmbedder wraps enc with a prompt cache.
func NewEmbedder(enc PromptEncoder) *Embedder {
	return &Embedder{enc: enc, cache: make(map[string][]float32), live: make(map[*Watcher][]*Set)}
}

// Embed fills the Weight of every label of s. Only prompts not already
// cached are sent to the encoder, in one batch. s must not yet be visible to
// readers. Encoding stops early, with ctx's error, when ctx ends.
func (e *Embedder) Embed(ctx context.Context, s *Set) error {
	e.mu.Lock()
	defer e.mu.Unlock()

	var missing []string
	for _, p := range s.Prompts() {
		if _, ok := e.cache[p]; !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		embs, err := e.enc.EncodePrompts(ctx, missing)
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
		w, err := engine.Ensemble(embs)
		if err != nil {
			return fmt.Errorf("%s:%d: label %q: %w", s.File, l.Line, l.Name, err)
		}
		l.Weight = w
	}
	s.clf = &engine.Classifier{Labels: s.Names(), Weights: s.Weights(), Scale: e.enc.LogitScale()}
	return nil
}

// Retain forgets cached prompts that neither sets nor the current set of
// any Watcher using this Embedder needs, so that the cache does not grow
// without bound as files are edited over months.
func (e *Embedder) Retain(sets ...*Set) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pruneLocked(sets)
}

// setLive records the sets a watcher currently serves, which every prune
// keeps, and prunes. Several watchers (one per camera) may share the cache.
func (e *Embedder) setLive(w *Watcher, sets []*Set) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if sets == nil {
		delete(e.live, w)
		return
	}
	e.live[w] = sets
	e.pruneLocked(nil)
}

func (e *Embedder) pruneLocked(extra []*Set) {
	keep := make(map[string]bool)
	add := func(sets []*Set) {
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
	}
	add(extra)
	for _, sets := range e.live {
		add(sets)
	}
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

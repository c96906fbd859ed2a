package labels

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/clipd/clipd/engine"
)

// PromptEncoder turns prompts into text embeddings. The model packages
// implement it (tokenize, EncodeTexts, normalize); labels depends only on this
// interface so that it never imports model code.
type PromptEncoder interface {
	// EncodePrompts returns one L2-normalized embedding per prompt. It
	// may be called from several goroutines at once.
	EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error)
	// LogitScale multiplies cosine similarities before the softmax.
	LogitScale() float32
}

// PromptStore keeps prompt embeddings beyond the process, so that a
// restart encodes only prompts never seen (promptcache.Cache implements
// it). A store never fails a lookup: what it cannot find is encoded. It
// must be safe for concurrent use: Embed calls it without a lock.
type PromptStore interface {
	// Get returns the stored embedding of each prompt, nil where none.
	Get(prompts []string) [][]float32
	// Put stores embeddings just computed.
	Put(prompts []string, embs [][]float32) error
}

// encodeBatch is how many prompts go to the encoder at once: the batch
// model.EncodePrompts runs in one call. Between batches the Embedder
// checks its context and reports progress.
const encodeBatch = 64

// Progress intervals: reports (log lines, Progress callbacks) are at most
// this far apart, and encoded prompts are stored at least this often, so
// that a crash loses little work.
const (
	DefaultProgressEvery = 5 * time.Second
	storeEvery           = 10 * time.Second
)

// EmbedderConfig configures an Embedder; only Encoder is required.
type EmbedderConfig struct {
	Encoder PromptEncoder
	// Store, if set, is consulted before encoding and receives every
	// prompt encoded.
	Store PromptStore
	// Log receives a line when encoding starts and ends, and progress
	// lines while it runs.
	Log *slog.Logger
	// Progress, if set, is called with the same reports (the daemon sends
	// them to systemd's STATUS=, one-shot commands draw a bar); from as
	// many goroutines at once as there are Embed calls encoding.
	Progress func(Progress)
	// ProgressEvery is the least time between two reports while encoding;
	// 0 means DefaultProgressEvery.
	ProgressEvery time.Duration
}

// Progress reports prompts being encoded for one labels file.
type Progress struct {
	File string
	// Done of Total prompts encoded so far; Cached more came from the
	// Store without encoding.
	Done, Total, Cached int
	Elapsed             time.Duration
}

// Rate is prompts encoded per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// Remaining estimates the time left at the rate so far; 0 when unknown.
func (p Progress) Remaining() time.Duration {
	r := p.Rate()
	if r == 0 {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
}

// String is the report as one line, e.g. "labels/cifar100.labels: encoding
// prompts, 640/1800 (35%), 11.8/s, about 1m38s left".
func (p Progress) String() string {
	switch {
	case p.Done == 0:
		cached := ""
		if p.Cached > 0 {
			cached = fmt.Sprintf(" (%d more from the prompt cache)", p.Cached)
		}
		return fmt.Sprintf("%s: encoding %d prompts%s", p.File, p.Total, cached)
	case p.Done < p.Total:
		return fmt.Sprintf("%s: encoding prompts, %d/%d (%d%%), %.1f/s, about %s left",
			p.File, p.Done, p.Total, 100*p.Done/p.Total, p.Rate(), roundDuration(p.Remaining()))
	}
	return fmt.Sprintf("%s: encoded %d prompts in %s (%.1f/s)", p.File, p.Total, roundDuration(p.Elapsed), p.Rate())
}

func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// Embedder computes label weights and remembers prompt embeddings by prompt
// text, so that editing one label in a file with eighty prompts per label
// encodes only the prompts that changed. With a PromptStore it also
// remembers them across restarts. It is safe for concurrent use.
type Embedder struct {
	conf EmbedderConfig
	log  *slog.Logger

	mu    sync.Mutex
	cache map[string][]float32
	dim   int
	// live holds each watcher's current sets, whose prompts a prune keeps.
	live map[*Watcher][]*Set
}

// NewEmbedder wraps enc with an in-memory prompt cache.
func NewEmbedder(enc PromptEncoder) *Embedder {
	e, _ := OpenEmbedder(EmbedderConfig{Encoder: enc})
	return e
}

// OpenEmbedder makes an Embedder as conf says.
func OpenEmbedder(conf EmbedderConfig) (*Embedder, error) {
	if conf.Encoder == nil {
		return nil, fmt.Errorf("labels: EmbedderConfig.Encoder is nil")
	}
	if conf.ProgressEvery <= 0 {
		conf.ProgressEvery = DefaultProgressEvery
	}
	log := conf.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Embedder{conf: conf, log: log, cache: make(map[string][]float32), live: make(map[*Watcher][]*Set)}, nil
}

// Embed fills the Weight of every label of s. Prompts neither in memory
// nor in the Store are encoded, in batches, and kept in both. s must not
// yet be visible to readers. Encoding stops between batches, with ctx's
// error, when ctx ends (the daemon's shutdown, a watcher's Close); what
// was encoded is kept in memory and in the Store.
func (e *Embedder) Embed(ctx context.Context, s *Set) error { return e.embed(ctx, s, true) }

// EmbedAdHoc is Embed for a set that serves one request, such as a socket
// client's labels: prompts known in memory or in the Store are used, the
// others are encoded and then dropped with the set, so that what clients
// ask for neither grows the Embedder's memory nor evicts the labels
// files' embeddings from the Store.
func (e *Embedder) EmbedAdHoc(ctx context.Context, s *Set) error { return e.embed(ctx, s, false) }

// embed holds e.mu only to look up and to insert, never while encoding,
// so that a client's request does not wait for a labels file being
// encoded, nor a reload for a client. Two callers may then encode the same
// new prompt; the second insert replaces the first with an equal vector.
func (e *Embedder) embed(ctx context.Context, s *Set, keep bool) error {
	prompts := s.Prompts()
	// have holds every embedding the set needs, so that a prune by another
	// watcher while this one encodes cannot take one away.
	have := make(map[string][]float32, len(prompts))
	var missing []string
	e.mu.Lock()
	for _, p := range prompts {
		if emb, ok := e.cache[p]; ok {
			have[p] = emb
		} else {
			missing = append(missing, p)
		}
	}
	e.mu.Unlock()

	cached := 0
	if len(missing) > 0 && e.conf.Store != nil {
		stored := e.conf.Store.Get(missing)
		left := missing[:0]
		e.mu.Lock()
		for i, emb := range stored {
			if emb != nil && e.acceptDim(emb) {
				have[missing[i]] = emb
				if keep {
					e.cache[missing[i]] = emb
				}
				cached++
			} else {
				left = append(left, missing[i])
			}
		}
		e.mu.Unlock()
		missing = left
		if len(missing) == 0 && cached > 0 {
			e.log.Info("prompts from the prompt cache", "file", s.File, "prompts", cached)
		}
	}
	if len(missing) > 0 {
		embs, err := e.encode(ctx, s.File, missing, cached, keep)
		if keep && len(embs) > 0 {
			// Also after a failure: a retry encodes only the rest.
			e.mu.Lock()
			for i, emb := range embs {
				e.cache[missing[i]] = emb
			}
			e.mu.Unlock()
		}
		if err != nil {
			return err
		}
		for i, emb := range embs {
			have[missing[i]] = emb
		}
	}

	for i := range s.Labels {
		l := &s.Labels[i]
		embs := make([][]float32, len(l.Prompts))
		for j, p := range l.Prompts {
			embs[j] = have[p]
		}
		w, err := engine.Ensemble(embs)
		if err != nil {
			return fmt.Errorf("%s:%d: label %s: %w", s.File, l.Line, quoted(l.Name), err)
		}
		l.Weight = w
	}
	s.clf = &engine.Classifier{Labels: s.Names(), Weights: s.Weights(), Scale: e.conf.Encoder.LogitScale()}
	return nil
}

// acceptDim fixes the dimension at the first embedding and accepts only
// embeddings of that length. e.mu must be held.
func (e *Embedder) acceptDim(emb []float32) bool {
	if e.dim == 0 {
		e.dim = len(emb)
	}
	return len(emb) == e.dim && len(emb) > 0
}

// checkDim is acceptDim for a caller not holding e.mu; it returns the
// dimension for the error message.
func (e *Embedder) checkDim(embs [][]float32) (i, dim int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, emb := range embs {
		if !e.acceptDim(emb) {
			return i, e.dim, false
		}
	}
	return 0, e.dim, true
}

// encode runs prompts through the encoder in batches, reporting as it
// goes and, with persist, storing what it encoded. It returns the
// embeddings of prompts[:len(embs)]: all of them, or on failure those
// encoded before it. e.mu must not be held.
func (e *Embedder) encode(ctx context.Context, file string, prompts []string, cached int, persist bool) (out [][]float32, err error) {
	start := time.Now()
	p := Progress{File: file, Total: len(prompts), Cached: cached}
	e.report(p)
	lastReport, lastStore := start, start
	stored := 0 // out[:stored] are in the Store
	store := func() {
		if !persist || e.conf.Store == nil || stored == len(out) {
			return
		}
		if err := e.conf.Store.Put(prompts[stored:len(out)], out[stored:]); err != nil {
			e.log.Warn("prompt cache: storing prompt embeddings failed; they will be encoded again next time",
				"file", file, "prompts", len(out)-stored, "err", err)
		}
		stored = len(out)
		lastStore = time.Now()
	}
	defer store()
	out = make([][]float32, 0, len(prompts))
	for lo := 0; lo < len(prompts); lo += encodeBatch {
		if err := ctx.Err(); err != nil {
			e.log.Info("encoding prompts stopped", "file", file, "done", lo, "total", len(prompts))
			return out, fmt.Errorf("%s: encoding stopped after %d of %d prompts: %w", file, lo, len(prompts), err)
		}
		batch := prompts[lo:min(lo+encodeBatch, len(prompts))]
		embs, err := e.conf.Encoder.EncodePrompts(ctx, batch)
		if err != nil {
			return out, fmt.Errorf("%s: encoding %d prompts: %w", file, len(prompts), err)
		}
		if len(embs) != len(batch) {
			return out, fmt.Errorf("%s: encoder returned %d embeddings for %d prompts", file, len(embs), len(batch))
		}
		if i, dim, ok := e.checkDim(embs); !ok {
			return out, fmt.Errorf("%s: prompt %s: embedding has %d values, want %d", file, quoted(batch[i]), len(embs[i]), dim)
		}
		out = append(out, embs...)
		p.Done, p.Elapsed = len(out), time.Since(start)
		if now := time.Now(); p.Done < p.Total && now.Sub(lastReport) >= e.conf.ProgressEvery {
			e.report(p)
			lastReport = now
		}
		if time.Since(lastStore) >= storeEvery {
			store()
		}
	}
	e.report(p)
	return out, nil
}

// report logs p and passes it to the Progress callback.
func (e *Embedder) report(p Progress) {
	switch {
	case p.Done == 0:
		e.log.Info("encoding prompts", "file", p.File, "prompts", p.Total, "from_cache", p.Cached)
	case p.Done < p.Total:
		e.log.Info("encoding prompts", "file", p.File, "done", p.Done, "total", p.Total,
			"per_s", math.Round(p.Rate()*10)/10, "left", roundDuration(p.Remaining()).String())
	default:
		e.log.Info("prompts encoded", "file", p.File, "prompts", p.Total,
			"took", roundDuration(p.Elapsed).String(), "per_s", math.Round(p.Rate()*10)/10)
	}
	if e.conf.Progress != nil {
		e.conf.Progress(p)
	}
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
// keeps, and prunes. Several watchers may share the cache: the daemon has
// one per labels file, however many cameras and regions use it.
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

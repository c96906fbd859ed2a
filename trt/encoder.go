package trt

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/clipd/clipd/internal/procfs"
	"github.com/clipd/clipd/tokenizer"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/engine/onnxrt"
)

// Tensor names of a bundle's ONNX files (the same as engine/onnxrt's).
const (
	imageInput = onnxrt.ImageInput
	textInput  = onnxrt.TextInput
	backend    = engine.BackendTensorRT
)

// Encoder names, used in cache file names and verdicts.
const (
	Visual  = "visual"
	Textual = "textual"
)

// Options configure Open.
type Options struct {
	// CacheDir holds engines and timing caches; empty means
	// $XDG_CACHE_HOME/clipd/tensorrt (os.UserCacheDir).
	CacheDir string
	// Build shapes both engines; its batch profile bounds every call.
	Build BuildOptions
	// Root prefixes /proc/meminfo and /etc/nv_tegra_release; "" is "/".
	Root string
	// Reference is the FP32 encoder the accuracy guard compares with and
	// falls back to. Nil opens ONNX Runtime with ONNXRuntimeLib and
	// Threads. A successful Open takes ownership (Close closes it); after
	// a failed Open the caller still owns it.
	Reference      engine.Encoder
	ONNXRuntimeLib string
	Threads        int
	// Spinning and TextIdle configure the reference that Open opens, as
	// for the ONNX Runtime backend (onnxrt.Options): an encoder whose
	// engine the guard refuses runs on it for as long as the daemon runs.
	Spinning bool
	TextIdle time.Duration
	// MinCosine overrides the guard's threshold; 0 means MinCosine.
	MinCosine float64
	Log       *slog.Logger
	Progress  func(string)
}

// tower is one encoder: a TensorRT engine, or the reference after the
// guard refused the engine.
type tower struct {
	name     string
	engine   *Engine
	path     string
	verdict  Verdict
	fallback bool
}

// Encoder is an engine.Encoder over two TensorRT engines. Calls may come
// from several goroutines; each engine serialises its own inferences.
type Encoder struct {
	bundle    *bundle.Bundle
	imageSize int
	embedDim  int
	visual    *tower
	text      *tower
	// reference stays open only while some tower falls back to it.
	reference engine.Encoder

	closeMu sync.RWMutex
	closed  bool
}

var _ engine.Encoder = (*Encoder)(nil)

// Open builds or loads the bundle's two engines, checks each against the
// FP32 reference and falls back to the reference per encoder when an
// engine is not accurate enough.
func Open(b *bundle.Bundle, opts Options) (enc *Encoder, err error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	e, err := openEngines(b, opts, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if opts.Reference != nil {
				e.reference = nil
			}
			e.Close()
		}
	}()
	ref := opts.Reference
	if ref == nil {
		ref, err = onnxrt.Open(b, onnxrt.Options{LibraryPath: opts.ONNXRuntimeLib, IntraOpThreads: opts.Threads,
			Spinning: opts.Spinning, TextIdle: opts.TextIdle})
		if err != nil {
			return nil, fmt.Errorf("trt: opening the FP32 reference for the accuracy guard: %w", err)
		}
	}
	e.reference = ref
	tok, err := probeTokens(b)
	if err != nil {
		return nil, err
	}
	vis, txt, err := Compare(e, ref, tok, opts.MinCosine)
	if err != nil {
		return nil, err
	}
	e.applyVerdicts(vis, txt, log)
	return e, nil
}

// applyVerdicts closes each engine the guard refused, so that its encoder
// runs on the reference, and closes what of the reference nothing uses
// any more: all of it when both engines were accepted, else the tower
// whose engine was (the text session the guard opened, or the visual
// session for good), when the reference can (onnxrt's CloseText and
// CloseImages).
func (e *Encoder) applyVerdicts(vis, txt Verdict, log *slog.Logger) {
	for _, t := range []struct {
		tw *tower
		v  Verdict
	}{{e.visual, vis}, {e.text, txt}} {
		t.tw.verdict = t.v
		if t.v.Accept {
			log.Info("TensorRT engine accepted", "encoder", t.tw.name, "engine", t.tw.path,
				"worst_probe", t.v.Worst, "cosine", t.v.WorstCosine)
			continue
		}
		log.Warn("TensorRT engine refused; this encoder runs on ONNX Runtime", "encoder", t.tw.name, "reason", t.v.Reason)
		t.tw.fallback = true
		t.tw.engine.Close()
		t.tw.engine = nil
	}
	switch ref := e.reference; {
	case !e.visual.fallback && !e.text.fallback:
		e.reference = nil
		if err := ref.Close(); err != nil {
			log.Warn("closing the FP32 reference", "err", err)
		}
	case !e.text.fallback:
		if r, ok := ref.(interface{ CloseText() }); ok {
			r.CloseText()
		}
	case !e.visual.fallback:
		if r, ok := ref.(interface{ CloseImages() }); ok {
			r.CloseImages()
		}
	}
}

// openEngines gets both engines from the cache, building what is missing.
func openEngines(b *bundle.Bundle, opts Options, log *slog.Logger) (*Encoder, error) {
	versions, err := Versions()
	if err != nil {
		return nil, err
	}
	device, err := DeviceInfo()
	if err != nil {
		return nil, err
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	l4t, err := L4TRelease(root)
	if err != nil {
		return nil, fmt.Errorf("trt: %w", err)
	}
	build, err := opts.Build.normalized()
	if err != nil {
		return nil, err
	}
	// The workspace is capped by the memory free when a build runs, not
	// now: loading a cached engine needs none, and the key holds the
	// workspace asked for (see engineFromCache).
	spare := func(requested uint64) (uint64, error) {
		mem, err := procfs.ReadMeminfo(root)
		if err != nil {
			return 0, fmt.Errorf("trt: workspace limit: %w", err)
		}
		var gpuFree uint64 // integrated: the same DRAM that MemAvailable counts
		if !device.Integrated {
			gpuFree = device.FreeMemory
			if d, err := DeviceInfo(); err == nil {
				gpuFree = d.FreeMemory // after the engines loaded so far
			}
		}
		return WorkspaceLimit(requested, mem.Available, gpuFree)
	}
	dir := opts.CacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("trt: no engine cache directory configured and %w", err)
		}
		dir = filepath.Join(base, "clipd", "tensorrt")
	}
	cache := &Cache{Dir: dir, Log: log}
	log.Info("TensorRT backend", "tensorrt", versions.TensorRTLinked, "cuda", versions.CUDARuntime,
		"gpu", device.Name, "compute", device.ComputeCapability(), "integrated", device.Integrated, "l4t", l4t)

	e := &Encoder{bundle: b, imageSize: b.ImageSize(), embedDim: b.EmbedDim()}
	specs := []struct {
		name, path, input string
		item              []int64
		dst               **tower
	}{
		{Visual, b.VisualONNX, imageInput, []int64{3, int64(e.imageSize), int64(e.imageSize)}, &e.visual},
		{Textual, b.TextualONNX, textInput, []int64{tokenizer.ContextLength}, &e.text},
	}
	for _, s := range specs {
		sum, err := FileSHA256(s.path)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("trt: %w", err)
		}
		key := NewKeyInputs(s.name, sum, versions, device, l4t, build)
		var eng *Engine
		outcome, err := engineFromCache(cache, key, build, spare,
			func(bo BuildOptions) ([]byte, error) { return Build(s.path, bo, opts.Progress) },
			func(plan []byte) error {
				loaded, err := Load(plan)
				if err != nil {
					return err
				}
				if err := checkEngine(loaded, s.input, s.item, e.embedDim, build); err != nil {
					loaded.Close()
					return err
				}
				eng = loaded
				return nil
			})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("trt: %s encoder (%s): %w", s.name, s.path, err)
		}
		for _, m := range eng.Messages() {
			log.Warn(m, "encoder", s.name)
		}
		log.Info("TensorRT engine ready", "encoder", s.name, "path", outcome.Path, "built", outcome.Built,
			"mapped_memory", eng.Mapped())
		*s.dst = &tower{name: s.name, engine: eng, path: outcome.Path}
	}
	return e, nil
}

// engineFromCache gets one encoder's engine plan from the cache, or
// builds it with the workspace that spare allows at that moment (and the
// GPU's timing cache). The key holds the workspace asked for
// (build.WorkspaceBytes), not the capped one: the cap follows the memory
// free at each start, and keying on it made a constrained machine rebuild
// (minutes) on almost every start. A plan built under a tighter cap may
// have fewer tactics to choose from; it is still what the accuracy guard
// checks, and a later build (another TensorRT, another model) gets the
// cap of its own time.
func engineFromCache(cache *Cache, key KeyInputs, build BuildOptions, spare func(requested uint64) (uint64, error),
	buildPlan func(BuildOptions) ([]byte, error), load func([]byte) error) (Outcome, error) {
	return cache.GetOrBuild(key, func() ([]byte, error) {
		bo := build
		ws, err := spare(bo.WorkspaceBytes)
		if err != nil {
			return nil, err
		}
		bo.WorkspaceBytes = ws
		bo.TimingCache = cache.LoadTimingCache(key)
		bo.SaveTimingCache = func(data []byte) {
			if err := cache.SaveTimingCache(key, data); err != nil {
				cache.log().Warn("saving the TensorRT timing cache", "err", err)
			}
		}
		return buildPlan(bo)
	}, load)
}

// checkEngine verifies that an engine (possibly from the cache) has the
// tensors the bundle promises, so a stale or foreign engine is rebuilt.
func checkEngine(e *Engine, input string, item []int64, embedDim int, o BuildOptions) error {
	in, out := e.Input(), e.Output()
	if in.Name != input {
		return fmt.Errorf("engine input is %q, want %q", in.Name, input)
	}
	if len(in.Dims) != 1+len(item) || !slices.Equal(in.Dims[1:], item) {
		return fmt.Errorf("engine input %s has dims %v, want [batch %v]", in.Name, in.Dims, item)
	}
	if want := []int64{int64(embedDim)}; len(out.Dims) != 2 || !slices.Equal(out.Dims[1:], want) {
		return fmt.Errorf("engine output %s has dims %v, want [batch %d]", out.Name, out.Dims, embedDim)
	}
	if in.MinBatch > o.MinBatch || in.MaxBatch < o.MaxBatch {
		return fmt.Errorf("engine batch profile %d..%d does not cover %d..%d", in.MinBatch, in.MaxBatch, o.MinBatch, o.MaxBatch)
	}
	return nil
}

// Verdicts returns the guard's decisions for the visual and text engines.
func (e *Encoder) Verdicts() (visual, textual Verdict) {
	return e.visual.verdict, e.text.verdict
}

// EncodeImages runs n images through the visual engine in chunks of at
// most the profile's maximum batch.
func (e *Encoder) EncodeImages(pixels []float32, n int) ([][]float32, error) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	item := 3 * e.imageSize * e.imageSize
	if n <= 0 || len(pixels) != n*item {
		return nil, fmt.Errorf("trt: EncodeImages: %d values for %d images of %d", len(pixels), n, item)
	}
	if e.visual.fallback {
		return e.reference.EncodeImages(pixels, n)
	}
	return e.run(e.visual.engine, n, item, func(lo, hi int) Tensor { return Tensor{Float32: pixels[lo*item : hi*item]} })
}

// EncodeTexts runs token arrays through the text engine.
func (e *Encoder) EncodeTexts(tokens [][]int32) ([][]float32, error) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	if len(tokens) == 0 {
		return nil, errors.New("trt: EncodeTexts: no token arrays")
	}
	for i, t := range tokens {
		if len(t) != tokenizer.ContextLength {
			return nil, fmt.Errorf("trt: EncodeTexts: token array %d has %d ids, want %d", i, len(t), tokenizer.ContextLength)
		}
	}
	if e.text.fallback {
		return e.reference.EncodeTexts(tokens)
	}
	flat := make([]int32, 0, len(tokens)*tokenizer.ContextLength)
	for _, t := range tokens {
		flat = append(flat, t...)
	}
	return e.run(e.text.engine, len(tokens), tokenizer.ContextLength, func(lo, hi int) Tensor {
		return Tensor{Int32: flat[lo*tokenizer.ContextLength : hi*tokenizer.ContextLength]}
	})
}

// run splits n items into batches the engine's profile accepts.
func (e *Encoder) run(eng *Engine, n, item int, slice func(lo, hi int) Tensor) ([][]float32, error) {
	maxBatch := eng.Input().MaxBatch
	out := make([]float32, n*e.embedDim)
	for lo := 0; lo < n; lo += maxBatch {
		hi := min(lo+maxBatch, n)
		if err := eng.Infer(slice(lo, hi), hi-lo, out[lo*e.embedDim:hi*e.embedDim]); err != nil {
			return nil, err
		}
	}
	res := make([][]float32, n)
	for i := range res {
		res[i] = out[i*e.embedDim : (i+1)*e.embedDim : (i+1)*e.embedDim]
	}
	return res, nil
}

// ImageSize is the side of the square image input.
func (e *Encoder) ImageSize() int { return e.imageSize }

// EmbedDim is the embedding length.
func (e *Encoder) EmbedDim() int { return e.embedDim }

// Backend is "tensorrt", with the fallen-back encoders named.
func (e *Encoder) Backend() string {
	switch {
	case e.visual != nil && e.visual.fallback && e.text != nil && e.text.fallback:
		return backend + " (both encoders on onnxruntime)"
	case e.visual != nil && e.visual.fallback:
		return backend + " (visual on onnxruntime)"
	case e.text != nil && e.text.fallback:
		return backend + " (textual on onnxruntime)"
	}
	return backend
}

// Close releases the engines and the reference; it waits for calls.
func (e *Encoder) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	for _, t := range []*tower{e.visual, e.text} {
		if t != nil && t.engine != nil {
			errs = append(errs, t.engine.Close())
		}
	}
	if e.reference != nil {
		errs = append(errs, e.reference.Close())
	}
	return errors.Join(errs...)
}

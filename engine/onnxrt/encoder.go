package onnxrt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/lifecycle"
	"github.com/clipd/clipd/tokenizer"
)

// Tensor names a bundle's ONNX files must use (tools/export-clip and
// immich's exports agree on them).
const (
	ImageInput  = "image"
	TextInput   = "text"
	OutputName  = "embedding"
	backendName = engine.BackendONNXRuntime
)

// maxCachedBatch bounds the batch sizes whose tensors are kept between
// calls; larger batches are rare (warm-up of label sets) and get fresh
// tensors. maxIdlePerBatch bounds the memory held for concurrent callers.
const (
	maxCachedBatch  = 32
	maxIdlePerBatch = 4
)

// ErrClosed is returned by calls on a closed Encoder.
var ErrClosed = errors.New("onnxrt: encoder is closed")

// Options configures Open.
type Options struct {
	// LibraryPath is libonnxruntime.so.1; empty means $CLIPD_ONNXRUNTIME_LIB,
	// then build/onnxruntime near the executable or working directory, then
	// the system library directories.
	LibraryPath string
	// IntraOpThreads is the number of threads one inference uses; 0 means
	// one per CPU.
	IntraOpThreads int
	// Spinning lets the intra-op threads busy-wait for work between and
	// after calls (ONNX Runtime's session.intra_op.allow_spinning, on by
	// ONNX Runtime's default). Off, they sleep: a spinning pool holds
	// every core it has, which takes the CPU that capture and
	// preprocessing need on a machine the encoder shares with them.
	Spinning bool
	// TextIdle, when positive, closes the text session after that long
	// without a text call; the next call opens it again. Zero keeps it
	// open once opened. The text session is never opened before the first
	// text call either way.
	TextIdle time.Duration
}

// Encoder is an engine.Encoder backed by two ONNX Runtime sessions. Its
// methods may be called from several goroutines at once: ONNX Runtime's
// Run is thread-safe and every call takes its own tensors. Close waits for
// calls in flight.
//
// The text session is opened by the first EncodeTexts, not by Open: a
// daemon whose prompts all come from the prompt cache, or a one-shot
// classify, never needs its 250 MB (ViT-B/32) of weights. Open still
// checks the text model's declared inputs and outputs.
type Encoder struct {
	bundle    *bundle.Bundle
	imageSize int
	embedDim  int
	threads   int
	spinning  bool

	visual *tower
	text   *tower

	// textMu serializes opening and closing the text session; textUsers
	// counts text calls in flight, which keep it open.
	textMu      sync.Mutex
	textUsers   int
	textLastUse time.Time
	textOpens   int
	reaper      *lifecycle.Loop // closes the idle text session; nil when TextIdle is 0

	// closeMu is held shared by calls and exclusively by Close, so Close
	// never destroys a session under a running call.
	closeMu sync.RWMutex
	closed  bool
}

var _ engine.Encoder = (*Encoder)(nil)

// Open checks both of the bundle's models' input and output tensors
// against its config, then creates the visual session; the text session
// follows at the first EncodeTexts, so a text model that ONNX Runtime
// cannot load fails there, not here.
func Open(b *bundle.Bundle, opts Options) (*Encoder, error) {
	if _, err := initRuntime(opts.LibraryPath); err != nil {
		return nil, err
	}
	threads := opts.IntraOpThreads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	if threads < 0 {
		return nil, fmt.Errorf("onnxrt: IntraOpThreads must be >= 0, got %d", threads)
	}
	if opts.TextIdle < 0 {
		return nil, fmt.Errorf("onnxrt: TextIdle must be >= 0, got %s", opts.TextIdle)
	}
	s := int64(b.ImageSize())
	e := &Encoder{bundle: b, imageSize: b.ImageSize(), embedDim: b.EmbedDim(), threads: threads, spinning: opts.Spinning}
	var err error
	e.visual, err = newTower(b, b.VisualONNX, ImageInput, []int64{3, s, s},
		[]ort.TensorElementDataType{ort.TensorElementDataTypeFloat})
	if err != nil {
		return nil, err
	}
	// The text tower's arena is off: a batch of 64 prompts would leave
	// ~200 MB of activations in it for as long as the session lives, and
	// text calls are rare enough that the allocations do not show (equal
	// CPU time per batch with and without it).
	e.text, err = newTower(b, b.TextualONNX, TextInput, []int64{tokenizer.ContextLength},
		[]ort.TensorElementDataType{ort.TensorElementDataTypeInt32, ort.TensorElementDataTypeInt64})
	if err != nil {
		return nil, err
	}
	e.text.noArena = true
	if err := e.visual.openSession(e.sessionSettings()); err != nil {
		return nil, err
	}
	if idle := opts.TextIdle; idle > 0 {
		e.reaper = lifecycle.Go(func(ctx context.Context) { e.closeIdleText(ctx, idle) })
	}
	return e, nil
}

func (e *Encoder) sessionSettings() sessionSettings {
	return sessionSettings{threads: e.threads, spinning: e.spinning}
}

// closeIdleText closes the text session once it has gone idle unused for
// idle, checking a few times per period.
func (e *Encoder) closeIdleText(ctx context.Context, idle time.Duration) {
	tick := time.NewTicker(max(idle/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			e.textMu.Lock()
			if e.text.session != nil && e.textUsers == 0 && now.Sub(e.textLastUse) >= idle {
				e.text.closeSession()
			}
			e.textMu.Unlock()
		}
	}
}

// CloseText closes the text session now; the next EncodeTexts opens it
// again. It waits for calls in flight. For an owner that has finished
// with text for a while (trt, whose accuracy guard needed this text
// session once and whose text engine it accepted).
func (e *Encoder) CloseText() {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return
	}
	e.textMu.Lock()
	defer e.textMu.Unlock()
	e.text.closeSession()
}

// CloseImages closes the visual session for good: later EncodeImages calls
// fail, text calls go on. It waits for calls in flight. For an owner that
// keeps this encoder for text only (trt, after its accuracy guard
// accepted the visual engine and refused the text one): the visual
// session holds the image tower's weights, 350 MB for ViT-B/32.
func (e *Encoder) CloseImages() {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if !e.closed {
		e.visual.closeSession()
	}
}

// ErrImagesClosed is returned by EncodeImages after CloseImages.
var ErrImagesClosed = errors.New("onnxrt: the image session was closed (CloseImages)")

// TextLoaded says whether the text session is open now.
func (e *Encoder) TextLoaded() bool {
	e.textMu.Lock()
	defer e.textMu.Unlock()
	return e.text.session != nil
}

// acquireText opens the text session if it is closed and counts a call
// in flight, which keeps the reaper from closing it.
func (e *Encoder) acquireText() error {
	e.textMu.Lock()
	defer e.textMu.Unlock()
	if e.text.session == nil {
		if err := e.text.openSession(e.sessionSettings()); err != nil {
			return err
		}
		e.textOpens++
	}
	e.textUsers++
	return nil
}

func (e *Encoder) releaseText() {
	e.textMu.Lock()
	defer e.textMu.Unlock()
	e.textUsers--
	e.textLastUse = time.Now()
}

// tower is one ONNX model: an input of shape [N, item...] and an output
// embedding [N, D].
type tower struct {
	file      string // bundle-relative, for errors
	path      string
	inputName string
	noArena   bool                        // see Open
	session   *ort.DynamicAdvancedSession // nil while closed
	inputType ort.TensorElementDataType
	item      []int64 // input shape after the batch dimension
	itemLen   int
	// fixedBatch is the model's batch size when its first dimension is
	// not dynamic, else 0.
	fixedBatch int
	embedDim   int

	mu   sync.Mutex
	idle map[int][]*slot
}

// slot is one call's input and output tensors for a batch size.
type slot struct {
	in  ort.Value
	f32 []float32 // input data when the input is float32
	i32 []int32   // ... int32
	i64 []int64   // ... int64
	out *ort.Tensor[float32]
}

// sessionSettings are the session options every tower shares.
type sessionSettings struct {
	threads  int
	spinning bool
}

// newTower checks the model's declared tensors against the bundle without
// loading its weights (readModelFileIO); openSession loads them.
func newTower(b *bundle.Bundle, path, inputName string, item []int64, accepted []ort.TensorElementDataType) (*tower, error) {
	rel, err := filepath.Rel(b.Dir, path)
	if err != nil {
		rel = path
	}
	t := &tower{file: rel, path: path, inputName: inputName, item: item, embedDim: b.EmbedDim(), idle: map[int][]*slot{}}
	t.itemLen = 1
	for _, d := range item {
		t.itemLen *= int(d)
	}
	inputs, outputs, err := readModelFileIO(path)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the model's inputs and outputs: %w", path, err)
	}
	if err := t.checkIO(inputName, inputs, outputs, accepted); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func (t *tower) openSession(set sessionSettings) error {
	path := t.path
	so, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("%s: session options: %w", path, err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(set.threads); err != nil {
		return fmt.Errorf("%s: setting %d intra-op threads: %w", path, set.threads, err)
	}
	// Parallelism comes from the intra-op pool; inter-op threads would
	// only compete with it on CLIP's sequential graph.
	if err := so.SetInterOpNumThreads(1); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	spin := "0"
	if set.spinning {
		spin = "1"
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", spin); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if t.noArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	t.session, err = ort.NewDynamicAdvancedSession(path, []string{t.inputName}, []string{OutputName}, so)
	// ONNX Runtime parses the whole file into memory before it copies the
	// weights into their tensors; glibc keeps the freed copy (about the
	// size of the weights) unless asked to return it.
	releaseFreedMemory()
	if err != nil {
		t.session = nil
		return fmt.Errorf("%s: creating ONNX Runtime session: %w", path, err)
	}
	return nil
}

// closeSession frees the session and the tensors kept for it.
func (t *tower) closeSession() {
	t.mu.Lock()
	for _, l := range t.idle {
		for _, s := range l {
			s.destroy()
		}
	}
	clear(t.idle)
	t.mu.Unlock()
	if t.session != nil {
		t.session.Destroy()
		t.session = nil
	}
	releaseFreedMemory()
}

// checkIO compares the model's declared tensors with what the bundle
// promises: one input [N, item...] of an accepted type, and an output
// "embedding" float32 [N, D].
func (t *tower) checkIO(inputName string, inputs, outputs []ort.InputOutputInfo, accepted []ort.TensorElementDataType) error {
	describe := func(infos []ort.InputOutputInfo) string {
		s := ""
		for i, in := range infos {
			if i > 0 {
				s += ", "
			}
			s += fmt.Sprintf("%q %s %v", in.Name, typeName(in.DataType), []int64(in.Dimensions))
		}
		return "[" + s + "]"
	}
	if len(inputs) != 1 || inputs[0].Name != inputName {
		return fmt.Errorf("expected exactly one input tensor %q, found %s", inputName, describe(inputs))
	}
	in := inputs[0]
	if in.OrtValueType != ort.ONNXTypeTensor || !slices.Contains(accepted, in.DataType) {
		names := make([]string, len(accepted))
		for i, a := range accepted {
			names[i] = typeName(a)
		}
		return fmt.Errorf("input %q has element type %s, expected %s", inputName, typeName(in.DataType), strings.Join(names, " or "))
	}
	t.inputType = in.DataType
	want := append([]int64{-1}, t.item...)
	dims := []int64(in.Dimensions)
	if len(dims) != len(want) || !dimsMatch(dims[1:], t.item) {
		return fmt.Errorf("input %q has shape %v, expected %v (N, then %v)", inputName, dims, want, t.item)
	}
	if dims[0] > 0 {
		t.fixedBatch = int(dims[0])
	}
	var out *ort.InputOutputInfo
	for i := range outputs {
		if outputs[i].Name == OutputName {
			out = &outputs[i]
		}
	}
	if out == nil {
		return fmt.Errorf("no output tensor %q, found %s", OutputName, describe(outputs))
	}
	if out.OrtValueType != ort.ONNXTypeTensor || out.DataType != ort.TensorElementDataTypeFloat {
		return fmt.Errorf("output %q has element type %s, expected float32", OutputName, typeName(out.DataType))
	}
	// An output shape the file does not declare is checked when the model
	// runs: ONNX Runtime refuses an output tensor of the wrong shape.
	od := []int64(out.Dimensions)
	if out.Dimensions != nil && (len(od) != 2 || !dimsMatch(od[1:], []int64{int64(t.embedDim)})) {
		return fmt.Errorf("output %q has shape %v, expected [N %d] (config.json embed_dim)", OutputName, od, t.embedDim)
	}
	return nil
}

// typeName spells element types as numpy does, which is how the export
// tools and the bundle documentation name them.
func typeName(t ort.TensorElementDataType) string {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return "float32"
	case ort.TensorElementDataTypeFloat16:
		return "float16"
	case ort.TensorElementDataTypeDouble:
		return "float64"
	case ort.TensorElementDataTypeInt32:
		return "int32"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeUint8:
		return "uint8"
	}
	return t.String()
}

// dimsMatch treats a model's symbolic dimensions (<= 0) as wildcards.
func dimsMatch(model, want []int64) bool {
	for i, d := range model {
		if d > 0 && d != want[i] {
			return false
		}
	}
	return true
}

func (t *tower) newSlot(n int) (*slot, error) {
	shape := append(ort.Shape{int64(n)}, t.item...)
	s := &slot{}
	var err error
	switch t.inputType {
	case ort.TensorElementDataTypeFloat:
		s.f32 = make([]float32, n*t.itemLen)
		s.in, err = ort.NewTensor(shape, s.f32)
	case ort.TensorElementDataTypeInt32:
		s.i32 = make([]int32, n*t.itemLen)
		s.in, err = ort.NewTensor(shape, s.i32)
	case ort.TensorElementDataTypeInt64:
		s.i64 = make([]int64, n*t.itemLen)
		s.in, err = ort.NewTensor(shape, s.i64)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: allocating input tensor %v: %w", t.file, shape, err)
	}
	s.out, err = ort.NewEmptyTensor[float32](ort.Shape{int64(n), int64(t.embedDim)})
	if err != nil {
		s.in.Destroy()
		return nil, fmt.Errorf("%s: allocating output tensor [%d %d]: %w", t.file, n, t.embedDim, err)
	}
	return s, nil
}

func (s *slot) destroy() {
	s.in.Destroy()
	s.out.Destroy()
}

func (t *tower) get(n int) (*slot, error) {
	t.mu.Lock()
	if l := t.idle[n]; len(l) > 0 {
		s := l[len(l)-1]
		t.idle[n] = l[:len(l)-1]
		t.mu.Unlock()
		return s, nil
	}
	t.mu.Unlock()
	return t.newSlot(n)
}

func (t *tower) put(n int, s *slot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n <= maxCachedBatch && len(t.idle[n]) < maxIdlePerBatch {
		t.idle[n] = append(t.idle[n], s)
		return
	}
	s.destroy()
}

// run feeds a filled slot through the model and copies the embeddings out:
// the slot goes back to the pool, the caller owns the result.
func (t *tower) run(n int, s *slot) ([][]float32, error) {
	if err := t.session.Run([]ort.Value{s.in}, []ort.Value{s.out}); err != nil {
		return nil, fmt.Errorf("%s: running batch of %d: %w", t.file, n, err)
	}
	flat := slices.Clone(s.out.GetData())
	out := make([][]float32, n)
	for i := range out {
		out[i] = flat[i*t.embedDim : (i+1)*t.embedDim : (i+1)*t.embedDim]
	}
	return out, nil
}

func (t *tower) checkBatch(n int) error {
	if n <= 0 {
		return fmt.Errorf("%s: batch size must be positive, got %d", t.file, n)
	}
	if t.fixedBatch > 0 && n != t.fixedBatch {
		return fmt.Errorf("%s: model takes batches of exactly %d, got %d", t.file, t.fixedBatch, n)
	}
	return nil
}

// EncodeImages implements engine.ImageEncoder.
func (e *Encoder) EncodeImages(pixels []float32, n int) ([][]float32, error) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	t := e.visual
	if t.session == nil {
		return nil, ErrImagesClosed
	}
	if err := t.checkBatch(n); err != nil {
		return nil, err
	}
	if len(pixels) != n*t.itemLen {
		return nil, fmt.Errorf("%s: %d images of 3x%dx%d need %d values, got %d", t.file, n, e.imageSize, e.imageSize, n*t.itemLen, len(pixels))
	}
	s, err := t.get(n)
	if err != nil {
		return nil, err
	}
	defer t.put(n, s)
	copy(s.f32, pixels)
	return t.run(n, s)
}

// EncodeTexts implements engine.TextEncoder.
func (e *Encoder) EncodeTexts(tokens [][]int32) ([][]float32, error) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	t := e.text
	n := len(tokens)
	if err := t.checkBatch(n); err != nil {
		return nil, err
	}
	for i, row := range tokens {
		if len(row) != tokenizer.ContextLength {
			return nil, fmt.Errorf("%s: token array %d has %d ids, expected %d", t.file, i, len(row), tokenizer.ContextLength)
		}
	}
	if err := e.acquireText(); err != nil {
		return nil, err
	}
	defer e.releaseText()
	s, err := t.get(n)
	if err != nil {
		return nil, err
	}
	defer t.put(n, s)
	for i, row := range tokens {
		if s.i32 != nil {
			copy(s.i32[i*tokenizer.ContextLength:], row)
			continue
		}
		dst := s.i64[i*tokenizer.ContextLength : (i+1)*tokenizer.ContextLength]
		for j, id := range row {
			dst[j] = int64(id)
		}
	}
	return t.run(n, s)
}

// ImageSize implements engine.ImageEncoder.
func (e *Encoder) ImageSize() int { return e.imageSize }

// EmbedDim implements engine.Encoder.
func (e *Encoder) EmbedDim() int { return e.embedDim }

// Backend implements engine.Encoder.
func (e *Encoder) Backend() string { return backendName }

// Bundle is the bundle the encoder was opened from.
func (e *Encoder) Bundle() *bundle.Bundle { return e.bundle }

// Close waits for calls in flight, then frees the sessions. The process's
// ONNX Runtime environment stays loaded for other encoders.
func (e *Encoder) Close() error {
	if e.reaper != nil {
		e.reaper.Close()
	}
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.visual.closeSession()
	e.textMu.Lock()
	e.text.closeSession()
	e.textMu.Unlock()
	return nil
}

package onnxrt

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
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
}

// Encoder is an engine.Encoder backed by two ONNX Runtime sessions. Its
// methods may be called from several goroutines at once: ONNX Runtime's
// Run is thread-safe and every call takes its own tensors. Close waits for
// calls in flight.
type Encoder struct {
	bundle    *bundle.Bundle
	imageSize int
	embedDim  int

	visual *tower
	text   *tower

	// closeMu is held shared by calls and exclusively by Close, so Close
	// never destroys a session under a running call.
	closeMu sync.RWMutex
	closed  bool
}

var _ engine.Encoder = (*Encoder)(nil)

// Open loads the bundle's two models. The input and output tensors are
// checked against the bundle's config before any session is created.
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
	s := int64(b.ImageSize())
	e := &Encoder{bundle: b, imageSize: b.ImageSize(), embedDim: b.EmbedDim()}
	var err error
	e.visual, err = openTower(b, b.VisualONNX, ImageInput, []int64{3, s, s},
		[]ort.TensorElementDataType{ort.TensorElementDataTypeFloat}, threads)
	if err != nil {
		return nil, err
	}
	e.text, err = openTower(b, b.TextualONNX, TextInput, []int64{tokenizer.ContextLength},
		[]ort.TensorElementDataType{ort.TensorElementDataTypeInt32, ort.TensorElementDataTypeInt64}, threads)
	if err != nil {
		e.visual.close()
		return nil, err
	}
	return e, nil
}

// tower is one ONNX model: an input of shape [N, item...] and an output
// embedding [N, D].
type tower struct {
	file      string // bundle-relative, for errors
	session   *ort.DynamicAdvancedSession
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

func openTower(b *bundle.Bundle, path, inputName string, item []int64, accepted []ort.TensorElementDataType, threads int) (*tower, error) {
	rel, err := filepath.Rel(b.Dir, path)
	if err != nil {
		rel = path
	}
	t := &tower{file: rel, item: item, embedDim: b.EmbedDim(), idle: map[int][]*slot{}}
	t.itemLen = 1
	for _, d := range item {
		t.itemLen *= int(d)
	}
	inputs, outputs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the model's inputs and outputs: %w", path, err)
	}
	if err := t.checkIO(inputName, inputs, outputs, accepted); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("%s: session options: %w", path, err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("%s: setting %d intra-op threads: %w", path, threads, err)
	}
	// Parallelism comes from the intra-op pool; inter-op threads would
	// only compete with it on CLIP's sequential graph.
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t.session, err = ort.NewDynamicAdvancedSession(path, []string{inputName}, []string{OutputName}, so)
	if err != nil {
		return nil, fmt.Errorf("%s: creating ONNX Runtime session: %w", path, err)
	}
	return t, nil
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
	od := []int64(out.Dimensions)
	if len(od) != 2 || !dimsMatch(od[1:], []int64{int64(t.embedDim)}) {
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

func (t *tower) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.idle {
		for _, s := range l {
			s.destroy()
		}
	}
	t.idle = nil
	t.session.Destroy()
}

// EncodeImages implements engine.ImageEncoder.
func (e *Encoder) EncodeImages(pixels []float32, n int) ([][]float32, error) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	t := e.visual
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
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.visual.close()
	e.text.close()
	return nil
}

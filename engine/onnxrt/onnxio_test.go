package onnxrt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/clipd/clipd/internal/testmodel"
)

// readIOModels is every ONNX file the reader is checked on: the demo and
// tiny reference bundles (real CLIP exports), the linear stand-ins and
// the unusual declarations of testdata/io_models.py.
func readIOModels(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, tower := range []string{"visual", "textual"} {
		files["demo "+tower] = filepath.Join("..", "..", "models", "demo", tower, "model.onnx")
		files["tiny "+tower] = filepath.Join(testmodel.TinyBundle(t, "state"), tower, "model.onnx")
	}
	specs := []linearSpec{linearImage, linearText,
		{"text", "int64", "N,77", "embedding", 4},
		{"image", "float32", "2,3,32,32", "embedding", 4},
		{"pixel_values", "int32", "N,4,32,32", "other", 3}}
	b := linearBundle(t, specs[0], specs[1])
	files["linear visual"], files["linear textual"] = b.VisualONNX, b.TextualONNX
	for i, s := range specs[2:] {
		b := linearBundle(t, s, linearText)
		files["linear "+string(rune('a'+i))] = b.VisualONNX
	}
	dir := t.TempDir()
	if out, err := exec.Command(pythonPath(), "testdata/io_models.py", dir).CombinedOutput(); err != nil {
		t.Fatalf("io_models.py: %v\n%s", err, out)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.onnx"))
	if err != nil || len(names) < 5 {
		t.Fatalf("io_models.py wrote %v (%v)", names, err)
	}
	for _, n := range names {
		files[filepath.Base(n)] = n
	}
	return files
}

// The declarations read from the protobuf are what ONNX Runtime's own
// temporary session reports: inputs exactly; outputs as declared, which
// the runtime's shape inference may refine (a declared "N" that a fixed
// input makes 2) or fill in where the file declares no shape.
func TestReadModelIOMatchesRuntime(t *testing.T) {
	requireRuntime(t)
	if _, err := initRuntime(""); err != nil {
		t.Fatal(err)
	}
	files := readIOModels(t)
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, name := range keys {
		path := files[name]
		t.Run(name, func(t *testing.T) {
			wantIn, wantOut, err := ort.GetInputOutputInfo(path)
			if err != nil {
				t.Fatal(err)
			}
			gotIn, gotOut, err := readModelFileIO(path)
			if err != nil {
				t.Fatal(err)
			}
			if !sameIO(gotIn, wantIn, false) || !sameIO(gotOut, wantOut, true) {
				t.Errorf("read\n  in  %v\n  out %v\nONNX Runtime\n  in  %v\n  out %v", gotIn, gotOut, wantIn, wantOut)
			}
		})
	}
}

// sameIO compares declarations read with the runtime's; inferred allows
// the runtime to know more of a shape than the file declares.
func sameIO(read, runtime []ort.InputOutputInfo, inferred bool) bool {
	if len(read) != len(runtime) {
		return false
	}
	for i := range read {
		x, y := read[i], runtime[i]
		if x.Name != y.Name || x.OrtValueType != y.OrtValueType || x.DataType != y.DataType {
			return false
		}
		switch {
		case !inferred:
			if len(x.Dimensions) != len(y.Dimensions) || (len(x.Dimensions) > 0 && !reflect.DeepEqual(x.Dimensions, y.Dimensions)) {
				return false
			}
		case x.Dimensions == nil: // no shape declared
		case len(x.Dimensions) != len(y.Dimensions):
			return false
		default:
			for j, d := range x.Dimensions {
				if d >= 0 && d != y.Dimensions[j] {
					return false
				}
			}
		}
	}
	return true
}

// Reading the declarations of ViT-B/32's 350 MB visual tower reads a few
// kilobytes; it must not take the second that a temporary session takes.
func TestReadModelIOSkipsTheWeights(t *testing.T) {
	path := filepath.Join(testmodel.TinyBundle(t, "state"), "visual", "model.onnx")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	counter := &countingReader{r: f}
	in, out, err := readModelIO(counter, fi.Size())
	if err != nil || len(in) != 1 || len(out) != 1 {
		t.Fatalf("%v %v %v", in, out, err)
	}
	if counter.n*4 > fi.Size() {
		t.Errorf("read %d of the file's %d bytes", counter.n, fi.Size())
	}
}

type countingReader struct {
	r *os.File
	n int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

func TestReadModelIORefusesWhatIsNotAModel(t *testing.T) {
	real, err := os.ReadFile(filepath.Join("..", "..", "models", "demo", "visual", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("this is not a model\n")},
		{"truncated", real[:len(real)/2]},
		{"varint that never ends", bytes.Repeat([]byte{0xff}, 64)},
		{"graph longer than the file", append(pbTag(modelGraph, wireBytes), pbVarint(1<<40)...)},
		{"group wire type", pbTag(3, 3)},
		{"two graphs", append(pbBytes(modelGraph, nil), pbBytes(modelGraph, nil)...)},
		{"huge declaration", pbBytes(modelGraph, pbBytes(graphInput, make([]byte, maxValueInfoBytes+1)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readModelIO(bytes.NewReader(tc.data), int64(len(tc.data)))
			if !errors.Is(err, errNotONNX) {
				t.Errorf("got %v, want errNotONNX", err)
			}
		})
	}
}

// TypeProto.denotation is a string field after tensor_type: it must not
// wipe the element type and shape read before it (which made checkIO
// refuse a model ONNX Runtime accepts), while a second type field of the
// oneof still replaces the first, as protobuf decodes it.
func TestReadModelIOKeepsTheTypeAcrossADenotation(t *testing.T) {
	decl := pbTensorDecl("image", uint64(ort.TensorElementDataTypeFloat), -1, 3, 224, 224)
	// pbTensorDecl ends with the type field; add a denotation inside it.
	typeBody := append(pbBytes(typeTensor, append(pbUint(tensorTypeElem, 1), pbBytes(tensorTypeShape, pbBytes(shapeDim, pbUint(dimValue, 7)))...)),
		pbBytes(typeDenotation, []byte("IMAGE"))...)
	withDenotation := append(pbBytes(valueInfoName, []byte("image")), pbBytes(valueInfoType, typeBody)...)
	twoTypes := append(pbBytes(valueInfoName, []byte("image")),
		pbBytes(valueInfoType, append(pbBytes(typeTensor, pbUint(tensorTypeElem, 1)), pbBytes(typeSequence, nil)...))...)
	for _, tc := range []struct {
		name string
		decl []byte
		want ort.InputOutputInfo
	}{
		{"plain", decl, ort.InputOutputInfo{Name: "image", OrtValueType: ort.ONNXTypeTensor, DataType: ort.TensorElementDataTypeFloat, Dimensions: ort.Shape{-1, 3, 224, 224}}},
		{"denotation after tensor_type", withDenotation, ort.InputOutputInfo{Name: "image", OrtValueType: ort.ONNXTypeTensor, DataType: ort.TensorElementDataTypeFloat, Dimensions: ort.Shape{7}}},
		{"sequence after tensor_type", twoTypes, ort.InputOutputInfo{Name: "image", OrtValueType: ort.ONNXTypeSequence, DataType: ort.TensorElementDataTypeUndefined}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			model := pbBytes(modelGraph, append(pbBytes(graphInput, tc.decl), pbBytes(graphOutput, pbTensorDecl("embedding", 1, -1, 4))...))
			in, _, err := readModelIO(bytes.NewReader(model), int64(len(model)))
			if err != nil || len(in) != 1 {
				t.Fatalf("%v, %v", in, err)
			}
			if got := in[0]; got.Name != tc.want.Name || got.OrtValueType != tc.want.OrtValueType || got.DataType != tc.want.DataType ||
				!reflect.DeepEqual([]int64(got.Dimensions), []int64(tc.want.Dimensions)) {
				t.Errorf("read %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A model path that is a FIFO with no writer must fail at once, not block.
func TestReadModelFileIORefusesAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.onnx")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := readModelFileIO(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO was read as a model")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
}

func pbVarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func pbTag(field uint64, wire int) []byte { return pbVarint(field<<3 | uint64(wire)) }

func pbBytes(field uint64, body []byte) []byte {
	b := append(pbTag(field, wireBytes), pbVarint(uint64(len(body)))...)
	return append(b, body...)
}

func pbUint(field uint64, v uint64) []byte { return append(pbTag(field, wireVarint), pbVarint(v)...) }

// pbTensorDecl is a ValueInfoProto of a float tensor with the given dims
// (-1 for a named dimension).
func pbTensorDecl(name string, elem uint64, dims ...int64) []byte {
	var shape []byte
	for _, d := range dims {
		if d < 0 {
			shape = append(shape, pbBytes(shapeDim, pbBytes(2, []byte("N")))...)
		} else {
			shape = append(shape, pbBytes(shapeDim, pbUint(dimValue, uint64(d)))...)
		}
	}
	tensor := append(pbUint(tensorTypeElem, elem), pbBytes(tensorTypeShape, shape)...)
	return append(pbBytes(valueInfoName, []byte(name)), pbBytes(valueInfoType, pbBytes(typeTensor, tensor))...)
}

func FuzzReadModelIO(f *testing.F) {
	weight := append(pbBytes(tensorName, []byte("W")), pbBytes(9, make([]byte, 64))...)
	graph := bytes.Join([][]byte{
		pbBytes(1, []byte("a node")),
		pbBytes(graphInitializer, weight),
		pbBytes(graphInput, pbTensorDecl("image", 1, -1, 3, 224, 224)),
		pbBytes(graphInput, pbTensorDecl("W", 1, 4, 2)),
		pbBytes(graphOutput, pbTensorDecl("embedding", 1, -1, 512)),
	}, nil)
	f.Add(append(pbUint(1, 8), pbBytes(modelGraph, graph)...))
	f.Add(pbBytes(modelGraph, pbBytes(graphSparseInitializer, pbBytes(sparseTensorValues, weight))))
	if data, err := os.ReadFile(filepath.Join("..", "..", "models", "demo", "textual", "model.onnx")); err == nil {
		f.Add(data[:min(len(data), 1<<16)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, out, err := readModelIO(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, d := range append(in, out...) {
			if len(d.Name) > maxNameBytes || len(d.Dimensions) > maxRank {
				t.Fatalf("declaration beyond the bounds: %d-byte name, %d dims", len(d.Name), len(d.Dimensions))
			}
		}
	})
}

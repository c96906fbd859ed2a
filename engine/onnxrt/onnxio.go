package onnxrt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/clipd/clipd/internal/safefile"
)

// ONNX Runtime's own way to read a model's inputs and outputs
// (ort.GetInputOutputInfo) builds a whole temporary session: for
// ViT-B/32's visual tower that is a second full load of 350 MB of weights,
// about a second of CPU and 200 MB of peak memory before the real session
// is even created. The declarations are a few hundred bytes of the file's
// protobuf, so clipd reads just those, skipping over every weight.

// Field numbers of the ONNX protobuf messages read here (onnx/onnx.proto3).
const (
	modelGraph = 7 // ModelProto.graph

	graphInitializer       = 5  // GraphProto.initializer (TensorProto)
	graphInput             = 11 // GraphProto.input (ValueInfoProto)
	graphOutput            = 12 // GraphProto.output (ValueInfoProto)
	graphSparseInitializer = 15 // GraphProto.sparse_initializer (SparseTensorProto)

	tensorName         = 8 // TensorProto.name
	sparseTensorValues = 1 // SparseTensorProto.values (TensorProto)

	valueInfoName = 1 // ValueInfoProto.name
	valueInfoType = 2 // ValueInfoProto.type (TypeProto)

	typeTensor       = 1 // TypeProto.tensor_type
	typeSequence     = 4 // TypeProto.sequence_type
	typeMap          = 5 // TypeProto.map_type
	typeSparseTensor = 8 // TypeProto.sparse_tensor_type
	typeOptional     = 9 // TypeProto.optional_type
	typeDenotation   = 6 // TypeProto.denotation (a string; skipped)

	tensorTypeElem  = 1 // TypeProto.Tensor.elem_type
	tensorTypeShape = 2 // TypeProto.Tensor.shape

	shapeDim = 1 // TensorShapeProto.dim

	dimValue = 1 // TensorShapeProto.Dimension.dim_value
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// Bounds on what is read into memory: a value declaration is a name and a
// shape, never more than a few hundred bytes in a real model. A file that
// declares more is refused, not trusted.
const (
	maxValueInfoBytes = 64 << 10
	maxDeclaredBytes  = 1 << 20 // all inputs and outputs together
	maxNameBytes      = 4096
	maxRank           = 64
)

var errNotONNX = errors.New("not an ONNX model (bad protobuf)")

// readModelFileIO returns the inputs and outputs that the ONNX file at
// path declares, as ONNX Runtime's session would report them: graph
// inputs that are also initializers (older exporters list every weight as
// an input) are left out, as ONNX Runtime leaves them out. Output shapes
// are as declared, before the runtime's shape inference: a dimension the
// file leaves symbolic may be known to the runtime, and an output whose
// shape the file does not declare has nil Dimensions.
func readModelFileIO(path string) (inputs, outputs []ort.InputOutputInfo, err error) {
	f, fi, err := safefile.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return readModelIO(f, fi.Size())
}

// readModelIO parses the protobuf in r (size bytes): ModelProto.graph's
// inputs, outputs and initializer names. It reads only the bytes it needs
// and seeks over the rest, so the cost does not grow with the weights.
func readModelIO(r io.ReaderAt, size int64) (inputs, outputs []ort.InputOutputInfo, err error) {
	c := &cursor{r: r, end: size}
	var graph *span
	for c.more() {
		field, wire, err := c.tag()
		if err != nil {
			return nil, nil, err
		}
		if field == modelGraph && wire == wireBytes {
			s, err := c.sub()
			if err != nil {
				return nil, nil, err
			}
			if graph != nil {
				return nil, nil, fmt.Errorf("%w: more than one graph", errNotONNX)
			}
			graph = &s
			continue
		}
		if err := c.skip(wire); err != nil {
			return nil, nil, err
		}
	}
	if graph == nil {
		return nil, nil, fmt.Errorf("%w: no graph", errNotONNX)
	}
	// Declarations first; then, if there are inputs, the initializer
	// names, to drop inputs that are weights. Neither pass keeps more
	// than the declarations in memory.
	g := &cursor{r: r, off: graph.off, end: graph.end}
	declared := 0
	for g.more() {
		field, wire, err := g.tag()
		if err != nil {
			return nil, nil, err
		}
		if (field != graphInput && field != graphOutput) || wire != wireBytes {
			if err := g.skip(wire); err != nil {
				return nil, nil, err
			}
			continue
		}
		data, err := g.bytes(maxValueInfoBytes, "a value declaration")
		if err != nil {
			return nil, nil, err
		}
		if declared += len(data); declared > maxDeclaredBytes {
			return nil, nil, fmt.Errorf("%w: more than %d bytes of input and output declarations", errNotONNX, maxDeclaredBytes)
		}
		info, err := parseValueInfo(data)
		if err != nil {
			return nil, nil, err
		}
		if field == graphInput {
			inputs = append(inputs, info)
		} else {
			outputs = append(outputs, info)
		}
	}
	if len(inputs) == 0 {
		return inputs, outputs, nil
	}
	isInput := map[string]bool{}
	for _, in := range inputs {
		isInput[in.Name] = true
	}
	weights := map[string]bool{}
	g = &cursor{r: r, off: graph.off, end: graph.end}
	for g.more() {
		field, wire, err := g.tag()
		if err != nil {
			return nil, nil, err
		}
		if (field != graphInitializer && field != graphSparseInitializer) || wire != wireBytes {
			if err := g.skip(wire); err != nil {
				return nil, nil, err
			}
			continue
		}
		s, err := g.sub()
		if err != nil {
			return nil, nil, err
		}
		name, err := initializerName(r, s, field == graphSparseInitializer)
		if err != nil {
			return nil, nil, err
		}
		if isInput[name] {
			weights[name] = true
		}
	}
	required := inputs[:0]
	for _, in := range inputs {
		if !weights[in.Name] {
			required = append(required, in)
		}
	}
	return required, outputs, nil
}

// initializerName reads TensorProto.name (or, for a sparse initializer,
// SparseTensorProto.values.name), seeking over the weights themselves.
func initializerName(r io.ReaderAt, s span, sparse bool) (string, error) {
	c := &cursor{r: r, off: s.off, end: s.end}
	name := ""
	for c.more() {
		field, wire, err := c.tag()
		if err != nil {
			return "", err
		}
		switch {
		case sparse && field == sparseTensorValues && wire == wireBytes:
			inner, err := c.sub()
			if err != nil {
				return "", err
			}
			if name, err = initializerName(r, inner, false); err != nil {
				return "", err
			}
		case !sparse && field == tensorName && wire == wireBytes:
			data, err := c.bytes(maxNameBytes, "an initializer name")
			if err != nil {
				return "", err
			}
			name = string(data)
		default:
			if err := c.skip(wire); err != nil {
				return "", err
			}
		}
	}
	return name, nil
}

// parseValueInfo decodes a ValueInfoProto the way ONNX Runtime reports
// it: symbolic or unknown dimensions are -1, and only tensors have an
// element type and dimensions.
func parseValueInfo(data []byte) (ort.InputOutputInfo, error) {
	info := ort.InputOutputInfo{OrtValueType: ort.ONNXTypeUnknown, DataType: ort.TensorElementDataTypeUndefined}
	m := message(data)
	for m.more() {
		field, wire, err := m.tag()
		if err != nil {
			return info, err
		}
		switch {
		case field == valueInfoName && wire == wireBytes:
			name, err := m.bytes()
			if err != nil {
				return info, err
			}
			if len(name) > maxNameBytes {
				return info, fmt.Errorf("%w: a value name of %d bytes", errNotONNX, len(name))
			}
			info.Name = string(name)
		case field == valueInfoType && wire == wireBytes:
			t, err := m.bytes()
			if err != nil {
				return info, err
			}
			if err := parseType(t, &info); err != nil {
				return info, err
			}
		default:
			if err := m.skip(wire); err != nil {
				return info, err
			}
		}
	}
	return info, nil
}

func parseType(data []byte, info *ort.InputOutputInfo) error {
	m := message(data)
	for m.more() {
		field, wire, err := m.tag()
		if err != nil {
			return err
		}
		if wire != wireBytes {
			if err := m.skip(wire); err != nil {
				return err
			}
			continue
		}
		body, err := m.bytes()
		if err != nil {
			return err
		}
		// value is a oneof: a later type field replaces an earlier one, as
		// protobuf decodes it. Other fields (denotation, a string written
		// after tensor_type) leave the type alone.
		switch field {
		case typeTensor, typeSparseTensor, typeSequence, typeMap, typeOptional:
			info.Dimensions, info.DataType = nil, ort.TensorElementDataTypeUndefined
		}
		switch field {
		case typeTensor, typeSparseTensor:
			info.OrtValueType = ort.ONNXTypeTensor
			if field == typeSparseTensor {
				info.OrtValueType = ort.ONNXTypeSparseTensor
			}
			if err := parseTensorType(body, info); err != nil {
				return err
			}
		case typeSequence:
			info.OrtValueType = ort.ONNXTypeSequence
		case typeMap:
			info.OrtValueType = ort.ONNXTypeMap
		case typeOptional:
			info.OrtValueType = ort.ONNXTypeOptional
		}
	}
	return nil
}

func parseTensorType(data []byte, info *ort.InputOutputInfo) error {
	m := message(data)
	for m.more() {
		field, wire, err := m.tag()
		if err != nil {
			return err
		}
		switch {
		case field == tensorTypeElem && wire == wireVarint:
			v, err := m.varint()
			if err != nil {
				return err
			}
			info.DataType = ort.TensorElementDataType(v)
		case field == tensorTypeShape && wire == wireBytes:
			shape, err := m.bytes()
			if err != nil {
				return err
			}
			if info.Dimensions, err = parseShape(shape); err != nil {
				return err
			}
		default:
			if err := m.skip(wire); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseShape(data []byte) (ort.Shape, error) {
	dims := ort.Shape{}
	m := message(data)
	for m.more() {
		field, wire, err := m.tag()
		if err != nil {
			return nil, err
		}
		if field != shapeDim || wire != wireBytes {
			if err := m.skip(wire); err != nil {
				return nil, err
			}
			continue
		}
		body, err := m.bytes()
		if err != nil {
			return nil, err
		}
		if len(dims) >= maxRank {
			return nil, fmt.Errorf("%w: a tensor of more than %d dimensions", errNotONNX, maxRank)
		}
		d := int64(-1) // dim_param and unknown dimensions alike
		dm := message(body)
		for dm.more() {
			field, wire, err := dm.tag()
			if err != nil {
				return nil, err
			}
			if field == dimValue && wire == wireVarint {
				v, err := dm.varint()
				if err != nil {
					return nil, err
				}
				d = int64(v)
				continue
			}
			if err := dm.skip(wire); err != nil {
				return nil, err
			}
		}
		dims = append(dims, d)
	}
	return dims, nil
}

// message walks the fields of a protobuf message held in memory.
type message []byte

func (m *message) more() bool { return len(*m) > 0 }

func (m *message) varint() (uint64, error) {
	v, n := binary.Uvarint(*m)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint", errNotONNX)
	}
	*m = (*m)[n:]
	return v, nil
}

func (m *message) tag() (field uint64, wire int, err error) {
	v, err := m.varint()
	if err != nil {
		return 0, 0, err
	}
	return v >> 3, int(v & 7), nil
}

func (m *message) bytes() ([]byte, error) {
	n, err := m.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(*m)) {
		return nil, fmt.Errorf("%w: a field runs past its message", errNotONNX)
	}
	b := (*m)[:n]
	*m = (*m)[n:]
	return b, nil
}

func (m *message) skip(wire int) error {
	var n uint64
	switch wire {
	case wireVarint:
		_, err := m.varint()
		return err
	case wireFixed64:
		n = 8
	case wireFixed32:
		n = 4
	case wireBytes:
		_, err := m.bytes()
		return err
	default:
		return fmt.Errorf("%w: wire type %d", errNotONNX, wire)
	}
	if n > uint64(len(*m)) {
		return fmt.Errorf("%w: a field runs past its message", errNotONNX)
	}
	*m = (*m)[n:]
	return nil
}

// span is a byte range of the file.
type span struct{ off, end int64 }

// cursor walks the fields of a protobuf message in a file from off to end,
// reading through a small window so that skipping a weight is a seek and
// a run of small fields is one read.
type cursor struct {
	r        io.ReaderAt
	off, end int64

	buf    [4096]byte
	bufOff int64
	bufLen int
}

func (c *cursor) more() bool { return c.off < c.end }

// peek returns up to n bytes at the cursor without advancing.
func (c *cursor) peek(n int) ([]byte, error) {
	if c.off < c.bufOff || c.off+int64(n) > c.bufOff+int64(c.bufLen) {
		want := int64(len(c.buf))
		if rest := c.end - c.off; rest < want {
			want = rest
		}
		got, err := c.r.ReadAt(c.buf[:want], c.off)
		if got < int(want) && err != nil && err != io.EOF {
			return nil, err
		}
		c.bufOff, c.bufLen = c.off, got
	}
	avail := c.bufOff + int64(c.bufLen) - c.off
	if avail < int64(n) {
		n = int(avail)
	}
	start := c.off - c.bufOff
	return c.buf[start : start+int64(n)], nil
}

func (c *cursor) varint() (uint64, error) {
	b, err := c.peek(binary.MaxVarintLen64)
	if err != nil {
		return 0, err
	}
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint at byte %d", errNotONNX, c.off)
	}
	c.off += int64(n)
	return v, nil
}

func (c *cursor) tag() (field uint64, wire int, err error) {
	v, err := c.varint()
	if err != nil {
		return 0, 0, err
	}
	return v >> 3, int(v & 7), nil
}

// sub returns the span of a length-delimited field and moves past it.
func (c *cursor) sub() (span, error) {
	n, err := c.varint()
	if err != nil {
		return span{}, err
	}
	if n > uint64(c.end-c.off) {
		return span{}, fmt.Errorf("%w: a field at byte %d runs past its message", errNotONNX, c.off)
	}
	s := span{c.off, c.off + int64(n)}
	c.off = s.end
	return s, nil
}

// bytes reads a length-delimited field of at most limit bytes.
func (c *cursor) bytes(limit int, what string) ([]byte, error) {
	s, err := c.sub()
	if err != nil {
		return nil, err
	}
	if s.end-s.off > int64(limit) {
		return nil, fmt.Errorf("%w: %s of %d bytes", errNotONNX, what, s.end-s.off)
	}
	data := make([]byte, s.end-s.off)
	if n, err := c.r.ReadAt(data, s.off); n < len(data) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file ends inside a field", errNotONNX)
		}
		return nil, err
	}
	return data, nil
}

func (c *cursor) skip(wire int) error {
	var n int64
	switch wire {
	case wireVarint:
		_, err := c.varint()
		return err
	case wireFixed64:
		n = 8
	case wireFixed32:
		n = 4
	case wireBytes:
		_, err := c.sub()
		return err
	default:
		return fmt.Errorf("%w: wire type %d at byte %d", errNotONNX, wire, c.off)
	}
	if n > c.end-c.off {
		return fmt.Errorf("%w: a field at byte %d runs past its message", errNotONNX, c.off)
	}
	c.off += n
	return nil
}

package trt

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by calls on a closed Engine or Encoder.
var ErrClosed = errors.New("trt: closed")

// DataType is the element type of an engine tensor.
type DataType int

// Element types as the shim reports them (TensorRT's own enum values are
// mapped inside the shim and never reach Go).
const (
	TypeOther DataType = iota
	TypeFloat32
	TypeFloat16
	TypeInt8
	TypeInt32
	TypeInt64
	TypeBool
	TypeUint8
	TypeBFloat16
)

func (t DataType) String() string {
	switch t {
	case TypeFloat32:
		return "float32"
	case TypeFloat16:
		return "float16"
	case TypeInt8:
		return "int8"
	case TypeInt32:
		return "int32"
	case TypeInt64:
		return "int64"
	case TypeBool:
		return "bool"
	case TypeUint8:
		return "uint8"
	case TypeBFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("DataType(%d)", int(t))
}

// TensorInfo describes an engine's input or output. Dims has -1 for the
// dynamic batch dimension.
type TensorInfo struct {
	Name     string
	Type     DataType
	Dims     []int64
	MinBatch int
	OptBatch int
	MaxBatch int
}

// ItemLen is the number of elements of one batch item.
func (t TensorInfo) ItemLen() int {
	n := 1
	for _, d := range t.Dims[1:] {
		n *= int(d)
	}
	return n
}

// Tensor is the input of one Infer call: exactly one of the slices is set.
// Float32 feeds float (or half) inputs; Int32 feeds int32 or int64 token
// ids, widened by the shim when the engine wants int64.
type Tensor struct {
	Float32 []float32
	Int32   []int32
}

// VersionInfo names the NVIDIA software in use. Versions are dotted.
type VersionInfo struct {
	// TensorRT is the version of the headers clipd was compiled against;
	// TensorRTLinked that of the library loaded at run time.
	TensorRT       string
	TensorRTLinked string
	Parser         string
	CUDARuntime    string
	CUDADriver     string
}

// Device describes the GPU TensorRT runs on.
type Device struct {
	Name         string
	ComputeMajor int
	ComputeMinor int
	SMs          int
	// Integrated is true on Jetson, where the GPU shares system memory.
	Integrated  bool
	CanMapHost  bool
	TotalMemory uint64
	FreeMemory  uint64
}

// ComputeCapability is e.g. "8.7".
func (d Device) ComputeCapability() string {
	return fmt.Sprintf("%d.%d", d.ComputeMajor, d.ComputeMinor)
}

// cudaVersion renders CUDA's 1000*major + 10*minor encoding.
func cudaVersion(v int) string {
	if v <= 0 {
		return "none"
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// trtVersion renders getInferLibVersion's value, whose encoding changed
// with TensorRT 10: 8.5.3 is 8503, 10.3.0 is 100300.
func trtVersion(v int) string {
	if v >= 100000 {
		return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
	}
	return fmt.Sprintf("%d.%d.%d", v/1000, v/100%10, v%100)
}

// parserVersion renders getNvOnnxParserVersion's major*10000 + minor*100 +
// patch encoding.
func parserVersion(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

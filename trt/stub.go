//go:build !(tensorrt && cgo)

package trt

import "errors"

// errNotBuilt is what every entry point returns in a build without the
// tensorrt tag, so `backend = "tensorrt"` fails with instructions.
var errNotBuilt = errors.New("clipd was built without TensorRT; rebuild with `make TENSORRT=1` on a machine with TensorRT")

// Compiled reports whether this binary contains the TensorRT backend.
const Compiled = false

// Available says why TensorRT cannot be used; in this build, always.
func Available() error { return errNotBuilt }

// Versions fails: there is no TensorRT in this build.
func Versions() (VersionInfo, error) { return VersionInfo{}, errNotBuilt }

// DeviceInfo fails: there is no CUDA in this build.
func DeviceInfo() (Device, error) { return Device{}, errNotBuilt }

// Build fails: there is no TensorRT in this build.
func Build(onnxPath string, opts BuildOptions, progress func(string)) ([]byte, error) {
	return nil, errNotBuilt
}

// Engine is a deserialized TensorRT engine; none can exist in this build.
type Engine struct{}

// Load fails: there is no TensorRT in this build.
func Load(plan []byte) (*Engine, error) { return nil, errNotBuilt }

// Input describes the engine's input.
func (e *Engine) Input() TensorInfo { return TensorInfo{} }

// Output describes the engine's output.
func (e *Engine) Output() TensorInfo { return TensorInfo{} }

// Mapped reports whether the engine uses mapped host memory.
func (e *Engine) Mapped() bool { return false }

// Messages drains TensorRT's queued log messages.
func (e *Engine) Messages() []string { return nil }

// Infer fails: there is no TensorRT in this build.
func (e *Engine) Infer(in Tensor, batch int, out []float32) error { return errNotBuilt }

// Close does nothing.
func (e *Engine) Close() error { return nil }

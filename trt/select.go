package trt

import "fmt"

// Backend names, as the configuration and the CLI spell them.
const (
	BackendAuto        = "auto"
	BackendTensorRT    = "tensorrt"
	BackendONNXRuntime = "onnxruntime"
)

// SelectBackend resolves a requested backend given TensorRT's availability
// (the result of Available). "auto" takes TensorRT when it is usable and
// ONNX Runtime otherwise, returning the reason for the log; "tensorrt"
// when unusable is an error carrying that reason.
func SelectBackend(requested string, availability error) (backend, reason string, err error) {
	switch requested {
	case "", BackendAuto:
		if availability != nil {
			return BackendONNXRuntime, "TensorRT is not usable: " + availability.Error(), nil
		}
		return BackendTensorRT, "TensorRT and a GPU are available", nil
	case BackendTensorRT:
		if availability != nil {
			return "", "", fmt.Errorf("backend %q was requested but %w", BackendTensorRT, availability)
		}
		return BackendTensorRT, "requested", nil
	case BackendONNXRuntime:
		return BackendONNXRuntime, "requested", nil
	}
	return "", "", fmt.Errorf("unknown backend %q (want %s, %s or %s)", requested, BackendAuto, BackendTensorRT, BackendONNXRuntime)
}

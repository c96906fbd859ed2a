package engine

import "fmt"

// Backend names, as the configuration, the CLI and Encoder.Backend spell
// them.
const (
	BackendAuto        = "auto"
	BackendTensorRT    = "tensorrt"
	BackendONNXRuntime = "onnxruntime"
)

// Backends lists the names a user may ask for.
var Backends = []string{BackendAuto, BackendTensorRT, BackendONNXRuntime}

// SelectBackend resolves a requested backend given TensorRT's availability
// (nil when TensorRT is compiled in and a GPU answers, else why not).
// "auto" takes TensorRT when it is usable and ONNX Runtime otherwise,
// returning the reason for the log; "tensorrt" when unusable is an error
// carrying that reason.
func SelectBackend(requested string, tensorRT error) (backend, reason string, err error) {
	switch requested {
	case "", BackendAuto:
		if tensorRT != nil {
			return BackendONNXRuntime, "TensorRT is not usable: " + tensorRT.Error(), nil
		}
		return BackendTensorRT, "TensorRT and a GPU are available", nil
	case BackendTensorRT:
		if tensorRT != nil {
			return "", "", fmt.Errorf("backend %q was requested but %w", BackendTensorRT, tensorRT)
		}
		return BackendTensorRT, "requested", nil
	case BackendONNXRuntime:
		return BackendONNXRuntime, "requested", nil
	}
	return "", "", fmt.Errorf("unknown backend %q (want %s, %s or %s)", requested, BackendAuto, BackendTensorRT, BackendONNXRuntime)
}

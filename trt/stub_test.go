//go:build !(tensorrt && cgo)

package trt

import (
	"errors"
	"testing"

	"github.com/clipd/clipd/bundle"
)

func TestStubRefusesWithInstructions(t *testing.T) {
	const want = "clipd was built without TensorRT; rebuild with `make TENSORRT=1` on a machine with TensorRT"
	if err := Available(); err == nil || err.Error() != want {
		t.Errorf("Available: %v", err)
	}
	if _, err := Open(&bundle.Bundle{}, Options{}); !errors.Is(err, errNotBuilt) {
		t.Errorf("Open: %v", err)
	}
	if _, err := Build("x.onnx", BuildOptions{}, nil); !errors.Is(err, errNotBuilt) {
		t.Errorf("Build: %v", err)
	}
	if _, err := Load([]byte("plan")); !errors.Is(err, errNotBuilt) {
		t.Errorf("Load: %v", err)
	}
	if _, err := Versions(); !errors.Is(err, errNotBuilt) {
		t.Errorf("Versions: %v", err)
	}
	if _, err := Verify(&bundle.Bundle{}, Options{}, 1); !errors.Is(err, errNotBuilt) {
		t.Errorf("Verify: %v", err)
	}
}

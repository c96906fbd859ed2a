package model

import (
	"errors"
	"log/slog"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
)

// openTensorRT is replaced when the trt package is wired in.
func openTensorRT(b *bundle.Bundle, opts Options, log *slog.Logger) (engine.Encoder, error) {
	return nil, errors.New("clipd was built without TensorRT; rebuild with `make TENSORRT=1` on a machine with TensorRT")
}

package model

import (
	"log/slog"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/trt"
)

// openTensorRT builds or loads the bundle's FP16 engines. Without TensorRT
// compiled in, or without a GPU, it returns the reason, which "auto" logs
// before falling back to ONNX Runtime.
func openTensorRT(b *bundle.Bundle, opts Options, log *slog.Logger) (engine.Encoder, error) {
	enc, err := trt.Open(b, trt.Options{
		CacheDir:       opts.EngineCache,
		Build:          trt.BuildOptions{OptBatch: max(opts.OptBatch, 1), MaxBatch: max(opts.MaxBatch, opts.OptBatch, 1)},
		ONNXRuntimeLib: opts.ONNXRuntimeLib,
		Threads:        opts.Threads,
		Spinning:       opts.Spinning,
		TextIdle:       opts.TextIdle,
		Log:            log,
		Progress:       opts.Progress,
	})
	if err != nil {
		return nil, err
	}
	return enc, nil
}

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/trt"
)

// cmdVerify checks a TensorRT build of a bundle against the FP32 ONNX
// Runtime path (the accuracy guard's probes) and times both encoders; on
// ONNX Runtime, the reference itself, it only times them.
func cmdVerify(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "--model DIR [--backend tensorrt] [--batch N] [--iterations N] [--engine-cache DIR]", stderr)
	var mf modelFlags
	mf.register(fs)
	batch := fs.Int("batch", 8, "the larger batch size to time (TensorRT: the profile's opt)")
	iterations := fs.Int("iterations", 20, "timed calls per encoder and batch size")
	cacheDir := fs.String("engine-cache", "", "TensorRT engine cache (default: the user cache dir)")
	if err := parseNoArgs(fs, args, &mf.dir); err != nil {
		return err
	}
	if *batch < 1 || *iterations < 1 {
		return fmt.Errorf("--batch and --iterations must be at least 1")
	}
	if mf.backend == engine.BackendTensorRT {
		b, err := bundle.Load(mf.dir)
		if err != nil {
			return err
		}
		report, err := trt.Verify(b, trt.Options{
			CacheDir:       *cacheDir,
			Build:          trt.BuildOptions{OptBatch: *batch, MaxBatch: *batch},
			ONNXRuntimeLib: mf.ortLib, Threads: mf.threads,
			Progress: func(msg string) { fmt.Fprintln(stderr, msg) },
		}, *iterations)
		if err != nil {
			return err
		}
		return report.WriteText(stdout)
	}
	m, err := mf.open(stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.Encoder.Backend() == engine.BackendONNXRuntime {
		fmt.Fprintf(stdout, "backend onnxruntime is the FP32 reference: nothing to compare (TensorRT: %v)\n", trt.Available())
	}
	timings, err := trt.Measure(m.Encoder, trt.TextProbes(m.Tokenizer), *batch, *iterations)
	if err != nil {
		return err
	}
	return trt.Report{Backend: m.Encoder.Backend(), Timings: timings}.WriteText(stdout)
}

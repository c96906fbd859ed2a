// Package trt is clipd's TensorRT backend for NVIDIA GPUs (Jetson and
// desktop). It builds engines from a bundle's ONNX files, caches them on
// disk under a key that changes whenever anything that shapes the engine
// changes, checks every FP16 engine against the FP32 ONNX Runtime path
// before trusting it, and serves them behind engine.Encoder.
//
// The TensorRT calls live in a C++ shim (shim.h, shim.cpp) compiled only
// with the build tag "tensorrt" (make TENSORRT=1). Without the tag,
// stub.go makes Available, Load, Build and Open return an error that says
// how to rebuild; the cache, the accuracy guard and the workspace cap are
// pure Go and always compiled and tested. Choosing between this backend
// and ONNX Runtime is engine.SelectBackend's.
//
// Each Engine owns one TensorRT execution context, one CUDA stream and
// staging buffers sized for its largest batch; Infer calls on one Engine
// are serialised by a mutex, because an execution context runs one
// inference at a time. Two towers (image and text) are two Engines, so an
// image batch and a text batch can run concurrently.
package trt

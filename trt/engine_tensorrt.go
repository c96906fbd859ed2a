//go:build tensorrt && cgo

package trt

/*
#cgo CXXFLAGS: -std=c++17
#cgo CPPFLAGS: -I/usr/local/cuda/include
#cgo LDFLAGS: -L/usr/local/cuda/lib64 -lnvinfer -lnvonnxparser -lcudart -lstdc++
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// Compiled reports whether this binary contains the TensorRT backend.
const Compiled = true

const errBufLen = 4096

func errText(buf []C.char) string {
	return C.GoString(&buf[0])
}

// Versions reports TensorRT, its ONNX parser, and CUDA runtime and driver.
func Versions() (VersionInfo, error) {
	var v C.clipd_trt_versions
	buf := make([]C.char, errBufLen)
	if C.clipd_trt_get_versions(&v, &buf[0], errBufLen) != 0 {
		return VersionInfo{}, fmt.Errorf("trt: %s", errText(buf))
	}
	return VersionInfo{
		TensorRT:       fmt.Sprintf("%d.%d.%d", int(v.trt_major), int(v.trt_minor), int(v.trt_patch)),
		TensorRTLinked: trtVersion(int(v.trt_linked)),
		Parser:         parserVersion(int(v.parser)),
		CUDARuntime:    cudaVersion(int(v.cuda_runtime)),
		CUDADriver:     cudaVersion(int(v.cuda_driver)),
	}, nil
}

// DeviceInfo describes the current CUDA device.
func DeviceInfo() (Device, error) {
	var d C.clipd_trt_device
	buf := make([]C.char, errBufLen)
	if C.clipd_trt_get_device(&d, &buf[0], errBufLen) != 0 {
		return Device{}, fmt.Errorf("trt: %s", errText(buf))
	}
	return Device{
		Name:         C.GoString(&d.name[0]),
		ComputeMajor: int(d.cc_major),
		ComputeMinor: int(d.cc_minor),
		SMs:          int(d.sm_count),
		Integrated:   d.integrated != 0,
		CanMapHost:   d.can_map_host != 0,
		TotalMemory:  uint64(d.total_memory),
		FreeMemory:   uint64(d.free_memory),
	}, nil
}

// Available returns nil when TensorRT is linked and a CUDA GPU answers,
// otherwise the reason in plain words.
func Available() error {
	v, err := Versions()
	if err != nil {
		return fmt.Errorf("the CUDA runtime does not answer (%w)", err)
	}
	if v.CUDADriver == "none" {
		return errors.New("no NVIDIA driver is loaded")
	}
	if _, err := DeviceInfo(); err != nil {
		return fmt.Errorf("no usable NVIDIA GPU (%w)", err)
	}
	return nil
}

// drain forwards queued log messages to sink until stop is closed.
func drain(log *C.clipd_trt_log, sink func(string), stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	buf := make([]C.char, errBufLen)
	flush := func() {
		var sev C.clipd_trt_severity
		for C.clipd_trt_log_next(log, &buf[0], errBufLen, &sev) == 1 {
			if sink != nil {
				sink(severityPrefix(int(sev)) + errText(buf))
			}
		}
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			flush()
			return
		case <-t.C:
			flush()
		}
	}
}

func severityPrefix(s int) string {
	switch s {
	case C.CLIPD_TRT_SEV_INTERNAL_ERROR, C.CLIPD_TRT_SEV_ERROR:
		return "TensorRT error: "
	case C.CLIPD_TRT_SEV_WARNING:
		return "TensorRT warning: "
	}
	return "TensorRT: "
}

// Build parses the ONNX file and builds a serialized engine. progress, if
// set, receives TensorRT's messages while the build runs (builds take
// minutes on Jetson) and a summary line at the end.
func Build(onnxPath string, opts BuildOptions, progress func(string)) ([]byte, error) {
	o, err := opts.normalized()
	if err != nil {
		return nil, err
	}
	log := C.clipd_trt_log_new(C.CLIPD_TRT_SEV_INFO)
	if log == nil {
		return nil, errors.New("trt: out of memory")
	}
	defer C.clipd_trt_log_free(log)
	b := C.clipd_trt_build_new()
	if b == nil {
		return nil, errors.New("trt: out of memory")
	}
	defer C.clipd_trt_build_free(b)

	path := C.CString(onnxPath)
	defer C.free(unsafe.Pointer(path))
	cfg := C.clipd_trt_build_config{
		onnx_path:       path,
		min_batch:       C.int32_t(o.MinBatch),
		opt_batch:       C.int32_t(o.OptBatch),
		max_batch:       C.int32_t(o.MaxBatch),
		workspace_bytes: C.uint64_t(o.WorkspaceBytes),
	}
	if o.Precision == FP16 {
		cfg.fp16 = 1
	}
	if !o.FP16LayerNorm {
		cfg.layernorm_fp32 = 1
	}
	if len(o.TimingCache) > 0 {
		// C keeps no pointer past the call, but the config struct lives in
		// Go memory and must not hold a Go pointer: copy to C memory.
		p := C.CBytes(o.TimingCache)
		defer C.free(p)
		cfg.timing_cache = p
		cfg.timing_cache_len = C.size_t(len(o.TimingCache))
	}
	if progress != nil {
		progress(fmt.Sprintf("building TensorRT engine for %s (%s, batch %d/%d/%d, workspace %d MiB)",
			onnxPath, o.Precision, o.MinBatch, o.OptBatch, o.MaxBatch, o.WorkspaceBytes>>20))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go drain(log, progress, stop, done)
	start := time.Now()
	rc := C.clipd_trt_build_run(b, &cfg, log)
	close(stop)
	<-done
	if rc != 0 {
		return nil, fmt.Errorf("trt: building %s: %s", onnxPath, C.GoString(C.clipd_trt_build_error(b)))
	}
	var n C.size_t
	p := C.clipd_trt_build_plan(b, &n)
	plan, err := copyOut(p, uint64(n), maxEngineBytes, "engine plan")
	if err != nil {
		return nil, err
	}
	if o.SaveTimingCache != nil {
		tp := C.clipd_trt_build_timing_cache(b, &n)
		// A timing cache that cannot be copied only costs the next
		// build its head start.
		if timings, err := copyOut(tp, uint64(n), maxEngineBytes, "timing cache"); err == nil && len(timings) > 0 {
			o.SaveTimingCache(timings)
		} else if err != nil && progress != nil {
			progress(err.Error())
		}
	}
	if progress != nil {
		fp16 := C.clipd_trt_build_fp16_used(b) != 0
		progress(fmt.Sprintf("built %s in %s: fp16 %v, %d LayerNorms kept in FP32 (%d layers pinned), %d MiB plan",
			onnxPath, time.Since(start).Round(time.Second), fp16, int(C.clipd_trt_build_layernorms(b)),
			int(C.clipd_trt_build_fp32_layers(b)), len(plan)>>20))
	}
	return plan, nil
}

// Engine is a deserialized engine with its execution context, stream and
// staging buffers. Infer calls are serialised: one context runs one
// inference at a time.
type Engine struct {
	mu     sync.Mutex
	h      *C.clipd_trt_engine
	log    *C.clipd_trt_log
	in     TensorInfo
	out    TensorInfo
	mapped bool
}

// Load deserializes plan. The plan bytes are not retained.
func Load(plan []byte) (*Engine, error) {
	if len(plan) == 0 {
		return nil, errors.New("trt: empty engine plan")
	}
	log := C.clipd_trt_log_new(C.CLIPD_TRT_SEV_WARNING)
	if log == nil {
		return nil, errors.New("trt: out of memory")
	}
	buf := make([]C.char, errBufLen)
	h := C.clipd_trt_engine_load(unsafe.Pointer(&plan[0]), C.size_t(len(plan)), log, &buf[0], errBufLen)
	if h == nil {
		C.clipd_trt_log_free(log)
		return nil, fmt.Errorf("trt: %s", errText(buf))
	}
	e := &Engine{h: h, log: log, mapped: C.clipd_trt_engine_mapped(h) != 0}
	e.in = tensorInfo(h, 0)
	e.out = tensorInfo(h, 1)
	return e, nil
}

func tensorInfo(h *C.clipd_trt_engine, i int) TensorInfo {
	var t C.clipd_trt_tensor
	C.clipd_trt_engine_tensor(h, C.int(i), &t)
	info := TensorInfo{
		Name:     C.GoString(&t.name[0]),
		Type:     DataType(t.dtype),
		MinBatch: int(t.min_batch),
		OptBatch: int(t.opt_batch),
		MaxBatch: int(t.max_batch),
	}
	for j := 0; j < int(t.nb_dims); j++ {
		info.Dims = append(info.Dims, int64(t.dims[j]))
	}
	return info
}

// Input describes the engine's input.
func (e *Engine) Input() TensorInfo { return e.in }

// Output describes the engine's output.
func (e *Engine) Output() TensorInfo { return e.out }

// Mapped reports whether the engine reads and writes mapped host memory
// (integrated GPUs) instead of copying to device buffers.
func (e *Engine) Mapped() bool { return e.mapped }

// Messages drains TensorRT's queued warnings and errors for this engine.
func (e *Engine) Messages() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.log == nil {
		return nil
	}
	var out []string
	buf := make([]C.char, errBufLen)
	var sev C.clipd_trt_severity
	for C.clipd_trt_log_next(e.log, &buf[0], errBufLen, &sev) == 1 {
		out = append(out, severityPrefix(int(sev))+errText(buf))
	}
	return out
}

// Infer runs batch items of in and writes batch * Output().ItemLen()
// float32 values to out.
func (e *Engine) Infer(in Tensor, batch int, out []float32) error {
	var ptr unsafe.Pointer
	var typ C.clipd_trt_dtype
	var n int
	switch {
	case in.Float32 != nil && in.Int32 == nil:
		typ, n = C.CLIPD_TRT_DTYPE_FLOAT, len(in.Float32)
		if n > 0 {
			ptr = unsafe.Pointer(&in.Float32[0])
		}
	case in.Int32 != nil && in.Float32 == nil:
		typ, n = C.CLIPD_TRT_DTYPE_INT32, len(in.Int32)
		if n > 0 {
			ptr = unsafe.Pointer(&in.Int32[0])
		}
	default:
		return errors.New("trt: Infer needs exactly one of Tensor.Float32 and Tensor.Int32")
	}
	if n == 0 || len(out) == 0 {
		return errors.New("trt: Infer with an empty input or output")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return ErrClosed
	}
	rc := C.clipd_trt_engine_infer(e.h, ptr, typ, C.int64_t(n), C.int32_t(batch),
		(*C.float)(unsafe.Pointer(&out[0])), C.int64_t(len(out)))
	if rc != 0 {
		return fmt.Errorf("trt: %s: %s", e.in.Name, C.GoString(C.clipd_trt_engine_error(e.h)))
	}
	return nil
}

// Close releases the engine. It waits for a running Infer.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h != nil {
		C.clipd_trt_engine_free(e.h)
		e.h = nil
	}
	if e.log != nil {
		C.clipd_trt_log_free(e.log)
		e.log = nil
	}
	return nil
}

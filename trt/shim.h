//go:build tensorrt

// C API over TensorRT for package trt. Everything here is plain C so that
// cgo can call it; the C++ objects stay behind opaque handles. No function
// throws: every C++ exception is caught in shim.cpp and turned into error
// text held by the handle (or written to the caller's buffer when there is
// no handle yet). There is no global state besides what CUDA itself keeps.
#ifndef CLIPD_TRT_SHIM_H
#define CLIPD_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// TensorRT enums are mapped to these inside the shim so that numbers whose
// meaning changes between TensorRT releases never cross into Go.
typedef enum
{
    CLIPD_TRT_DTYPE_OTHER = 0,
    CLIPD_TRT_DTYPE_FLOAT = 1,
    CLIPD_TRT_DTYPE_HALF = 2,
    CLIPD_TRT_DTYPE_INT8 = 3,
    CLIPD_TRT_DTYPE_INT32 = 4,
    CLIPD_TRT_DTYPE_INT64 = 5,
    CLIPD_TRT_DTYPE_BOOL = 6,
    CLIPD_TRT_DTYPE_UINT8 = 7,
    CLIPD_TRT_DTYPE_BF16 = 8
} clipd_trt_dtype;

typedef enum
{
    CLIPD_TRT_IO_NONE = 0,
    CLIPD_TRT_IO_INPUT = 1,
    CLIPD_TRT_IO_OUTPUT = 2
} clipd_trt_io_mode;

typedef enum
{
    CLIPD_TRT_SEV_INTERNAL_ERROR = 0,
    CLIPD_TRT_SEV_ERROR = 1,
    CLIPD_TRT_SEV_WARNING = 2,
    CLIPD_TRT_SEV_INFO = 3,
    CLIPD_TRT_SEV_VERBOSE = 4
} clipd_trt_severity;

// Log collects TensorRT's messages for one build or one engine. It is
// thread-safe: Go drains it from another goroutine while a build runs.
typedef struct clipd_trt_log clipd_trt_log;

// min_severity drops messages less severe than it (VERBOSE keeps all).
clipd_trt_log* clipd_trt_log_new(clipd_trt_severity min_severity);
void clipd_trt_log_free(clipd_trt_log* log);
// Copies the oldest queued message into buf (truncated, NUL-terminated),
// removes it and returns 1; returns 0 when the queue is empty.
int clipd_trt_log_next(clipd_trt_log* log, char* buf, size_t len, clipd_trt_severity* severity);

typedef struct
{
    int32_t trt_major, trt_minor, trt_patch;
    // The TensorRT library found at run time, which may differ from the
    // headers the shim was compiled against.
    int32_t trt_linked;
    int32_t parser;
    int32_t cuda_runtime;
    int32_t cuda_driver;
} clipd_trt_versions;

// Returns 0 on success, -1 with err filled otherwise.
int clipd_trt_get_versions(clipd_trt_versions* out, char* err, size_t errlen);

typedef struct
{
    char name[256];
    int32_t cc_major, cc_minor;
    int32_t sm_count;
    int32_t integrated;
    int32_t can_map_host;
    uint64_t total_memory;
    uint64_t free_memory;
} clipd_trt_device;

// Fills out for the current CUDA device. Returns 0, or -1 with err filled
// (no driver, no device).
int clipd_trt_get_device(clipd_trt_device* out, char* err, size_t errlen);

typedef struct
{
    const char* onnx_path;
    int32_t fp16;           // use FP16 kernels where the GPU has fast FP16
    int32_t layernorm_fp32; // keep every LayerNorm in FP32
    int32_t min_batch, opt_batch, max_batch;
    uint64_t workspace_bytes; // 0 leaves TensorRT's default
    const void* timing_cache; // may be NULL
    size_t timing_cache_len;
} clipd_trt_build_config;

// Build holds the result of one engine build: the serialized plan, the
// updated timing cache and what was done, or the error.
typedef struct clipd_trt_build clipd_trt_build;

clipd_trt_build* clipd_trt_build_new(void);
void clipd_trt_build_free(clipd_trt_build* b);
// Parses and builds; log (may be NULL) receives TensorRT's messages.
// Returns 0, or -1 with clipd_trt_build_error set.
int clipd_trt_build_run(clipd_trt_build* b, const clipd_trt_build_config* cfg, clipd_trt_log* log);
const char* clipd_trt_build_error(const clipd_trt_build* b);
const void* clipd_trt_build_plan(const clipd_trt_build* b, size_t* len);
const void* clipd_trt_build_timing_cache(const clipd_trt_build* b, size_t* len);
int32_t clipd_trt_build_fp16_used(const clipd_trt_build* b);
// Number of layers pinned to FP32 by the LayerNorm rule.
int32_t clipd_trt_build_fp32_layers(const clipd_trt_build* b);
// Number of LayerNorms recognised (normalization layers or decompositions).
int32_t clipd_trt_build_layernorms(const clipd_trt_build* b);

typedef struct clipd_trt_engine clipd_trt_engine;

#define CLIPD_TRT_MAX_DIMS 8

typedef struct
{
    char name[256];
    clipd_trt_io_mode mode;
    clipd_trt_dtype dtype;
    int32_t nb_dims;
    int64_t dims[CLIPD_TRT_MAX_DIMS];
    // Batch bounds of optimization profile 0 (inputs only).
    int64_t min_batch, opt_batch, max_batch;
} clipd_trt_tensor;

// Deserializes plan and prepares one execution context, a stream and
// staging buffers for max_batch items (pinned host + device memory on
// discrete GPUs, mapped pinned memory on integrated ones). The engine must
// have exactly one input and one output with the batch as first dimension.
// Returns NULL with err filled on failure. log may be NULL; if given, it
// must outlive the engine.
clipd_trt_engine* clipd_trt_engine_load(const void* plan, size_t len, clipd_trt_log* log, char* err, size_t errlen);
void clipd_trt_engine_free(clipd_trt_engine* e);
const char* clipd_trt_engine_error(const clipd_trt_engine* e);
int32_t clipd_trt_engine_mapped(const clipd_trt_engine* e);
// i is 0 for the input, 1 for the output.
int clipd_trt_engine_tensor(const clipd_trt_engine* e, int i, clipd_trt_tensor* out);

// Runs batch items. input holds batch * item values of input_type (FLOAT
// or INT32), converted by the shim to the engine's input type. output
// receives batch * output-item float32 values (output_len in elements).
// Not thread-safe: callers serialise calls per engine. Returns 0, or -1
// with clipd_trt_engine_error set.
int clipd_trt_engine_infer(clipd_trt_engine* e, const void* input, clipd_trt_dtype input_type, int64_t input_len,
    int32_t batch, float* output, int64_t output_len);

#ifdef __cplusplus
}
#endif

#endif

package trt

import (
	"fmt"
)

// Precision is the arithmetic an engine is built for.
type Precision string

// Precisions. FP16 doubles throughput on every GPU clipd targets; the
// LayerNorms stay FP32 and the accuracy guard checks the result.
const (
	FP16 Precision = "fp16"
	FP32 Precision = "fp32"
)

// Default batch bounds and workspace when options leave them zero.
const (
	DefaultMaxBatch  = 16
	DefaultWorkspace = 1 << 30
	// minWorkspace is the least workspace worth building with; below it
	// TensorRT has too few tactics for CLIP's attention and matmuls.
	minWorkspace = 64 << 20
)

// BuildOptions configure one engine build.
type BuildOptions struct {
	// Precision defaults to FP16.
	Precision Precision
	// MinBatch, OptBatch and MaxBatch are the optimization profile of the
	// batch dimension; zero means 1, MinBatch and DefaultMaxBatch.
	MinBatch, OptBatch, MaxBatch int
	// WorkspaceBytes limits TensorRT's scratch memory; zero means
	// DefaultWorkspace. Open caps it by WorkspaceLimit when it builds,
	// and keys the engine cache on the value asked for.
	WorkspaceBytes uint64
	// FP16LayerNorm lets TensorRT run LayerNorms in FP16. Off by default:
	// CLIP's residual stream overflows FP16 in the variance.
	FP16LayerNorm bool
	// TimingCache seeds the builder's kernel timing cache; a cache from
	// another GPU or TensorRT version is discarded by the shim.
	TimingCache []byte
	// SaveTimingCache, when set, receives the updated timing cache.
	SaveTimingCache func([]byte)
}

// normalized fills defaults and checks the batch profile.
func (o BuildOptions) normalized() (BuildOptions, error) {
	if o.Precision == "" {
		o.Precision = FP16
	}
	if o.Precision != FP16 && o.Precision != FP32 {
		return o, fmt.Errorf("trt: precision %q is not %q or %q", o.Precision, FP16, FP32)
	}
	if o.MinBatch == 0 {
		o.MinBatch = 1
	}
	if o.OptBatch == 0 {
		o.OptBatch = o.MinBatch
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = max(DefaultMaxBatch, o.OptBatch)
	}
	if o.MinBatch < 1 || o.OptBatch < o.MinBatch || o.MaxBatch < o.OptBatch {
		return o, fmt.Errorf("trt: batch profile must satisfy 1 <= min <= opt <= max, got min %d, opt %d, max %d",
			o.MinBatch, o.OptBatch, o.MaxBatch)
	}
	if o.WorkspaceBytes == 0 {
		o.WorkspaceBytes = DefaultWorkspace
	}
	return o, nil
}

// layerPrecisions lists the per-layer precision rules a build applies, for
// the cache key: a change of rule must invalidate cached engines.
func (o BuildOptions) layerPrecisions() []string {
	if o.Precision == FP16 && !o.FP16LayerNorm {
		return []string{"layernorm=fp32"}
	}
	return nil
}

package trt

import (
	"fmt"
)

// WorkspaceLimit caps the requested builder workspace by what the machine
// can spare: half of MemAvailable (on Jetson the GPU allocates from the
// same DRAM, and the build itself needs host memory everywhere), and half
// of the GPU's free memory when it has its own. It fails when less than
// minWorkspace would remain, rather than build an engine starved of
// tactics.
func WorkspaceLimit(requested, memAvailable, gpuFree uint64) (uint64, error) {
	if requested == 0 {
		requested = DefaultWorkspace
	}
	limit := min(requested, memAvailable/2)
	if gpuFree > 0 {
		limit = min(limit, gpuFree/2)
	}
	if limit < minWorkspace {
		return 0, fmt.Errorf("trt: only %d MiB of workspace can be spared (MemAvailable %d MiB, GPU free %d MiB); TensorRT needs at least %d MiB to build CLIP",
			limit>>20, memAvailable>>20, gpuFree>>20, minWorkspace>>20)
	}
	return limit, nil
}

package trt

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ParseMemAvailable returns MemAvailable from the text of /proc/meminfo,
// in bytes. name is used in errors.
func ParseMemAvailable(name string, data []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemAvailable" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s:%d: MemAvailable: want \"<number> kB\", got %q", name, line, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s:%d: MemAvailable: %w", name, line, err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return 0, fmt.Errorf("%s: no MemAvailable line (kernel older than 3.14?)", name)
}

// ReadMemAvailable reads <root>/proc/meminfo; root is "/" outside tests.
func ReadMemAvailable(root string) (uint64, error) {
	path := filepath.Join(root, "proc", "meminfo")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return ParseMemAvailable(path, data)
}

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

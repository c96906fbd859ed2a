package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/safefile"
)

// Process is what a process costs, for status and soak tests.
type Process struct {
	RSSBytes uint64 `json:"rss_bytes"`
	FDs      int    `json:"fds"`
}

// ReadProcess reads <root>/proc/<pid>/statm and counts <root>/proc/<pid>/fd.
func ReadProcess(root string, pid int) (Process, error) {
	dir := filepath.Join(root, "proc", strconv.Itoa(pid))
	data, err := safefile.ReadFile(filepath.Join(dir, "statm"), 4096)
	if err != nil {
		return Process{}, err
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return Process{}, fmt.Errorf("%s/statm: want at least 2 fields, got %q", dir, data)
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return Process{}, fmt.Errorf("%s/statm: resident %q: %w", dir, fields[1], err)
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return Process{}, err
	}
	return Process{RSSBytes: pages * uint64(os.Getpagesize()), FDs: len(fds)}, nil
}

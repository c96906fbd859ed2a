// Package procfs parses the few /proc files clipd reads. Paths are rooted
// in a directory given by the caller ("/" outside tests), so tests point
// at fake trees, as node_exporter does.
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/safefile"
)

// Meminfo holds the /proc/meminfo values clipd uses, in bytes.
type Meminfo struct {
	Total     uint64
	Available uint64
}

// maxMeminfoBytes bounds the read; the real file is about 1.5 KiB.
const maxMeminfoBytes = 64 << 10

// ParseMeminfo reads MemTotal and MemAvailable from the text of
// /proc/meminfo; name is used in errors.
func ParseMeminfo(name string, data []byte) (Meminfo, error) {
	var m Meminfo
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		key, rest, found := strings.Cut(sc.Text(), ":")
		if !found || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return Meminfo{}, fmt.Errorf("%s:%d: %s: want \"<number> kB\", got %q", name, line, key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || kb > 1<<53 {
			return Meminfo{}, fmt.Errorf("%s:%d: %s: %q is not a size in kB", name, line, key, fields[0])
		}
		if key == "MemTotal" {
			m.Total, haveTotal = kb*1024, true
		} else {
			m.Available, haveAvail = kb*1024, true
		}
	}
	if err := sc.Err(); err != nil {
		return Meminfo{}, fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case !haveAvail:
		return Meminfo{}, fmt.Errorf("%s: no MemAvailable line (kernel older than 3.14?)", name)
	case !haveTotal:
		return Meminfo{}, fmt.Errorf("%s: no MemTotal line", name)
	case m.Available > m.Total:
		return Meminfo{}, fmt.Errorf("%s: MemAvailable %d kB exceeds MemTotal %d kB", name, m.Available/1024, m.Total/1024)
	}
	return m, nil
}

// ReadMeminfo reads <root>/proc/meminfo.
func ReadMeminfo(root string) (Meminfo, error) {
	path := filepath.Join(root, "proc", "meminfo")
	data, err := safefile.ReadFile(path, maxMeminfoBytes)
	if err != nil {
		return Meminfo{}, err
	}
	return ParseMeminfo(path, data)
}

package trt

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/clipd/clipd/internal/safefile"
)

// ParseTegraRelease extracts the L4T release ("35.3.1") from the first line
// of /etc/nv_tegra_release, e.g.
//
//	# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, ...
func ParseTegraRelease(name string, data []byte) (string, error) {
	first, _, _ := strings.Cut(string(data), "\n")
	first = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(first), "#"))
	major, rest, ok := strings.Cut(first, " ")
	if !ok || len(major) < 2 || major[0] != 'R' || strings.Trim(major[1:], "0123456789") != "" {
		return "", fmt.Errorf("%s:1: want \"# R<major> (release), REVISION: <minor>.<patch>, ...\", got %q", name, first)
	}
	for field := range strings.SplitSeq(rest, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(field), ":")
		if ok && strings.TrimSpace(key) == "REVISION" {
			rev := strings.TrimSpace(value)
			if rev == "" || strings.Trim(rev, "0123456789.") != "" {
				return "", fmt.Errorf("%s:1: REVISION %q is not a version", name, rev)
			}
			return major[1:] + "." + rev, nil
		}
	}
	return "", fmt.Errorf("%s:1: no REVISION field in %q", name, first)
}

// L4TRelease reads <root>/etc/nv_tegra_release. It returns "" without error
// when the file does not exist, as on every non-Jetson machine.
func L4TRelease(root string) (string, error) {
	path := filepath.Join(root, "etc", "nv_tegra_release")
	data, err := safefile.ReadFile(path, 64<<10)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return ParseTegraRelease(path, data)
}

// Package onnxrt runs CLIP bundles with ONNX Runtime on the CPU through
// github.com/yalue/onnxruntime_go. The runtime library is loaded at run time
// (dlopen), so clipd builds without it; all cgo for ONNX Runtime stays behind
// this package's engine.Encoder.
package onnxrt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryEnv names the environment variable that points at
// libonnxruntime.so.1 when Options.LibraryPath is empty.
const LibraryEnv = "CLIPD_ONNXRUNTIME_LIB"

// LibraryName is the file tools/fetch-onnxruntime installs.
const LibraryName = "libonnxruntime.so.1"

// buildSubdir is where `make deps` puts the library, relative to the
// repository root.
var buildSubdir = filepath.Join("build", "onnxruntime")

var systemLibDirs = []string{
	"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu",
	"/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/local/lib64",
}

// ortState is the process-wide ONNX Runtime environment: onnxruntime_go
// keeps it in package globals, so one library, loaded once, serves every
// Encoder in the process.
var ortState struct {
	mu      sync.Mutex
	path    string // resolved library path once loaded
	version string
}

// libraryOrigin says where a library path came from, for error messages.
type libraryOrigin string

const (
	fromOptions libraryOrigin = "Options.LibraryPath"
	fromEnv     libraryOrigin = "$" + LibraryEnv
	fromSearch  libraryOrigin = "search"
)

// resolveLibrary picks the library path: explicit, then the environment,
// then the first existing file in searchDirs. It only looks at the
// filesystem; loading is initRuntime's job.
func resolveLibrary(explicit, env string, searchDirs []string) (string, libraryOrigin, error) {
	check := func(p string, origin libraryOrigin) (string, libraryOrigin, error) {
		st, err := os.Stat(p)
		switch {
		case err != nil && errors.Is(err, os.ErrNotExist):
			return "", origin, fmt.Errorf("ONNX Runtime library %s (from %s) does not exist; run `make deps` (tools/fetch-onnxruntime) or point %s at libonnxruntime.so.1", p, origin, LibraryEnv)
		case err != nil:
			return "", origin, fmt.Errorf("ONNX Runtime library %s (from %s): %w", p, origin, err)
		case st.IsDir():
			return "", origin, fmt.Errorf("ONNX Runtime library %s (from %s) is a directory; give the path of %s itself", p, origin, LibraryName)
		}
		return p, origin, nil
	}
	if explicit != "" {
		return check(explicit, fromOptions)
	}
	if env != "" {
		return check(env, fromEnv)
	}
	for _, d := range searchDirs {
		p := filepath.Join(d, LibraryName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, fromSearch, nil
		}
	}
	return "", fromSearch, fmt.Errorf("ONNX Runtime library %s not found (looked in %s); run `make deps` to fetch it into %s, install ONNX Runtime 1.30, or set %s to its path",
		LibraryName, strings.Join(searchDirs, ", "), buildSubdir, LibraryEnv)
}

// defaultSearchDirs lists build/onnxruntime next to the executable and in
// the working directory and its parents (tests run in package
// directories), then the system library directories.
func defaultSearchDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		add(filepath.Join(dir, buildSubdir))
		add(filepath.Join(dir, "..", buildSubdir))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			add(filepath.Join(d, buildSubdir))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range systemLibDirs {
		add(d)
	}
	return dirs
}

// initRuntime loads the library once per process. Asking for a different
// library afterwards is an error: onnxruntime_go cannot hold two.
func initRuntime(explicit string) (string, error) {
	ortState.mu.Lock()
	defer ortState.mu.Unlock()
	env := os.Getenv(LibraryEnv)
	if ortState.path != "" {
		want := explicit
		if want == "" {
			want = env
		}
		if want == "" || sameFile(want, ortState.path) {
			return ortState.path, nil
		}
		return "", fmt.Errorf("ONNX Runtime is already loaded from %s in this process; cannot also load %s", ortState.path, want)
	}
	path, origin, err := resolveLibrary(explicit, env, defaultSearchDirs())
	if err != nil {
		return "", err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("loading ONNX Runtime from %s (from %s): %w", path, origin, err)
	}
	ortState.path = path
	ortState.version = ort.GetVersion()
	return path, nil
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// Version is the loaded ONNX Runtime's version, or "" before the first
// Open.
func Version() string {
	ortState.mu.Lock()
	defer ortState.mu.Unlock()
	return ortState.version
}

// LibraryPath is the library loaded in this process, or "" before the
// first Open.
func LibraryPath() string {
	ortState.mu.Lock()
	defer ortState.mu.Unlock()
	return ortState.path
}

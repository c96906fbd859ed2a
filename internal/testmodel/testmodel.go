// Package testmodel gives tests and benchmarks real CLIP model bundles made
// by tools/export-clip: the tiny reference checkpoints from the shared data
// and random-weight bundles of released sizes. Bundles are exported once and
// cached under build/testmodels in the repository, keyed by a hash of every
// input that shapes them (checkpoint, vocabulary, exporter sources, flags), so
// editing the exporter invalidates the cache by itself.
package testmodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const (
	modulePath    = "github.com/clipd/clipd"
	defaultPython = "/usr/bin/python3"
	vocabRelPath  = "clip/bpe_simple_vocab_16e6.txt.gz"
	cacheRelPath  = "build/testmodels"
	keyLength     = 16
)

// DefaultOpset is the ONNX opset export-clip writes unless told otherwise.
const DefaultOpset = 17

// TinyBundle exports /work/shared/reference/model/tiny-vit-<form>.pt (form
// "state" or "jit") once and returns the bundle directory. It skips tb when
// the shared data or a Python with torch and onnx is missing.
func TinyBundle(tb testing.TB, form string) string {
	tb.Helper()
	return TinyBundleOpset(tb, form, DefaultOpset)
}

// TinyBundleOpset is TinyBundle at another ONNX opset, e.g. 16 for the
// decomposed LayerNorm that TensorRT 8.5 needs.
func TinyBundleOpset(tb testing.TB, form string, opset int) string {
	tb.Helper()
	return referenceBundle(tb, "reference", "tiny-vit-", "tiny-", form, opset)
}

// TinyResNetBundle exports the ModifiedResNet reference checkpoint
// /work/shared/reference-rn/model/tiny-rn-<form>.pt (form "state" or
// "jit") at opset 17 and returns the bundle directory.
func TinyResNetBundle(tb testing.TB, form string) string {
	tb.Helper()
	return TinyResNetBundleOpset(tb, form, DefaultOpset)
}

// TinyResNetBundleOpset is TinyResNetBundle at another ONNX opset.
func TinyResNetBundleOpset(tb testing.TB, form string, opset int) string {
	tb.Helper()
	return referenceBundle(tb, "reference-rn", "tiny-rn-", "tiny-rn-", form, opset)
}

func referenceBundle(tb testing.TB, set, filePrefix, cachePrefix, form string, opset int) string {
	tb.Helper()
	if form != "state" && form != "jit" {
		tb.Fatalf("testmodel: checkpoint form %q, want \"state\" or \"jit\"", form)
	}
	checkpoint := filepath.Join(SharedDir(tb), set, "model", filePrefix+form+".pt")
	if _, err := os.Stat(checkpoint); err != nil {
		tb.Skipf("testmodel: reference checkpoint missing: %v", err)
	}
	return cachedBundle(tb, withOpset(cachePrefix+form, opset), []string{checkpoint},
		checkpoint, "--opset", strconv.Itoa(opset))
}

// RandomBundle exports a random-weight bundle of arch ("tiny", "tiny-rn",
// "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px", "RN50", "RN101",
// "RN50x4", "RN50x16", "RN50x64"), seed 0, for benchmarks. ViT-B/32 takes
// a few minutes the first time and 580 MB of disk; RN50 400 MB.
func RandomBundle(tb testing.TB, arch string) string {
	tb.Helper()
	return RandomBundleOpset(tb, arch, DefaultOpset)
}

// RandomBundleOpset is RandomBundle at another ONNX opset.
func RandomBundleOpset(tb testing.TB, arch string, opset int) string {
	tb.Helper()
	return cachedBundle(tb, withOpset("random-"+sanitize(arch), opset), nil,
		"--random-init", arch, "--opset", strconv.Itoa(opset))
}

func withOpset(name string, opset int) string {
	if opset == DefaultOpset {
		return name
	}
	return name + "-opset" + strconv.Itoa(opset)
}

// SharedDir is the reference data directory: $CLIPD_SHARED, else ../shared
// next to the repository. It skips tb when neither exists.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	if dir := os.Getenv("CLIPD_SHARED"); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			tb.Skipf("testmodel: CLIPD_SHARED=%s: %v", dir, err)
		}
		return dir
	}
	dir := filepath.Join(filepath.Dir(RepoRoot(tb)), "shared")
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("testmodel: reference data not found: set CLIPD_SHARED or provide %s (%v)", dir, err)
	}
	return dir
}

// RepoRoot is the directory holding clipd's go.mod, found by walking up
// from the working directory (go test runs in the package directory).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := findRepoRoot()
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	return root
}

// Python is the interpreter that has torch and onnx: $CLIPD_PYTHON, else
// Debian's /usr/bin/python3 (the first python3 on PATH may lack them).
func Python() string {
	if p := os.Getenv("CLIPD_PYTHON"); p != "" {
		return p
	}
	return defaultPython
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && isModule(data, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func isModule(goMod []byte, path string) bool {
	for _, line := range strings.Split(string(goMod), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == "module" && fields[1] == path {
			return true
		}
	}
	return false
}

var (
	pythonOnce sync.Once
	pythonErr  error
)

// requireTorch skips tb unless Python() can import torch and onnx; checked
// once per process because starting torch takes seconds.
func requireTorch(tb testing.TB) {
	tb.Helper()
	pythonOnce.Do(func() {
		out, err := exec.Command(Python(), "-c", "import torch, onnx").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Errorf("%s cannot import torch and onnx (set CLIPD_PYTHON to Debian's python3): %v: %s",
				Python(), err, strings.TrimSpace(lastLine(out)))
		}
	})
	if pythonErr != nil {
		tb.Skipf("testmodel: %v", pythonErr)
	}
}

// cachedBundle returns the cached bundle for these export arguments, exporting it
// under an exclusive lock when it is absent.
func cachedBundle(tb testing.TB, name string, inputs []string, args ...string) string {
	tb.Helper()
	return bundleIn(tb, filepath.Join(RepoRoot(tb), cacheRelPath), name, inputs, args...)
}

func bundleIn(tb testing.TB, cache, name string, inputs []string, args ...string) string {
	tb.Helper()
	root := RepoRoot(tb)
	vocab := filepath.Join(SharedDir(tb), vocabRelPath)
	if _, err := os.Stat(vocab); err != nil {
		tb.Skipf("testmodel: CLIP vocabulary missing: %v", err)
	}
	exporterFiles, err := exporterSources(root)
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	key, err := cacheKey(args, append(append([]string{vocab}, inputs...), exporterFiles...))
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	dir := filepath.Join(cache, name+"-"+key[:keyLength])
	if complete(dir) {
		return dir
	}
	requireTorch(tb)

	if err := os.MkdirAll(cache, 0o755); err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	unlock, err := lock(filepath.Join(cache, name+".lock"))
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	defer unlock()
	// Another process may have finished the export while we waited.
	if complete(dir) {
		return dir
	}
	// A leftover from a killed run holds no config.json; the exporter
	// refuses directories with foreign files, so clear it.
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	cmdArgs := append([]string{filepath.Join(root, "tools", "export-clip")}, args...)
	cmdArgs = append(cmdArgs, dir, "--vocab", vocab)
	cmd := exec.Command(Python(), cmdArgs...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		tb.Fatalf("testmodel: %s %s: %v\n%s", Python(), strings.Join(cmdArgs, " "), err, stderr.String())
	}
	if !complete(dir) {
		tb.Fatalf("testmodel: export to %s finished without config.json\n%s", dir, stderr.String())
	}
	pruneStale(cache, name, dir)
	return dir
}

// complete reports whether dir holds a finished bundle. The exporter renames
// its staging directory into place last, so config.json means done.
func complete(dir string) bool {
	for _, rel := range []string{"config.json", "visual/model.onnx", "textual/model.onnx"} {
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			return false
		}
	}
	return true
}

// exporterSources lists the files whose content decides the exported graph.
func exporterSources(root string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(root, "tools", "clipexport", "*.py"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no exporter sources in %s", filepath.Join(root, "tools", "clipexport"))
	}
	sort.Strings(files)
	return append(files, filepath.Join(root, "tools", "export-clip")), nil
}

func cacheKey(args []string, files []string) (string, error) {
	h := sha256.New()
	for _, a := range args {
		fmt.Fprintf(h, "arg %q\n", a)
	}
	for _, path := range files {
		digest, err := fileDigest(path)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "file %q %x\n", filepath.Base(path), digest)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type digestKey struct {
	path    string
	size    int64
	modTime int64
}

// digests remembers file hashes for the process: hashing the checkpoint on
// every TinyBundle call would cost ~15 ms a call.
var digests sync.Map // digestKey -> []byte

func fileDigest(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	key := digestKey{path, info.Size(), info.ModTime().UnixNano()}
	if d, ok := digests.Load(key); ok {
		return d.([]byte), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := h.Sum(nil)
	digests.Store(key, d)
	return d, nil
}

// lock takes an exclusive flock, which serialises exports across the
// parallel `go test` processes of different packages and within one.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// pruneStale removes bundles of the same name made by older exporter
// versions (random ViT-L/14 bundles weigh over a gigabyte each) and staging
// directories of killed exports.
func pruneStale(cache, name, keep string) {
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		dir := filepath.Join(cache, e.Name())
		if rest, ok := strings.CutPrefix(e.Name(), "."+name+"-"); ok && len(rest) > keyLength &&
			isHex(rest[:keyLength]) && strings.HasPrefix(rest[keyLength:], ".tmp-") {
			// Staging left by an export that was killed; ours is done and
			// we hold the lock, so no live export of this name uses it.
			os.RemoveAll(dir)
			continue
		}
		hash, ok := strings.CutPrefix(e.Name(), name+"-")
		// Exact hash length, so "ViT-L-14" never prunes "ViT-L-14-336px".
		if ok && e.IsDir() && dir != keep && len(hash) == keyLength && isHex(hash) {
			os.RemoveAll(dir)
		}
	}
}

func sanitize(arch string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '-'
	}, arch)
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

package onnxrt

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clipd/clipd/bundle"
)

// pythonPath is the interpreter with onnx installed (Debian's, not the
// first python3 on PATH).
func pythonPath() string {
	if p := os.Getenv("CLIPD_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// requireRuntime skips when no ONNX Runtime library can be found, so the
// rest of the suite runs on machines without `make deps`.
func requireRuntime(tb testing.TB) {
	tb.Helper()
	if LibraryPath() != "" {
		return
	}
	if _, _, err := resolveLibrary("", os.Getenv(LibraryEnv), defaultSearchDirs()); err != nil {
		tb.Skipf("ONNX Runtime library missing (run `make deps` or set %s): %v", LibraryEnv, err)
	}
}

// linearSpec describes one stand-in tower written by testdata/matmul_model.py.
type linearSpec struct {
	input, elem, dims, output string
	dim                       int
}

var (
	linearImage = linearSpec{"image", "float32", "N,3,32,32", "embedding", 4}
	linearText  = linearSpec{"text", "int32", "N,77", "embedding", 4}
)

const linearConfig = `{"embed_dim":%d,"logit_scale":50,"vision_cfg":{"image_size":%d,"layers":1,"width":8,"patch_size":16},"text_cfg":{"context_length":77,"vocab_size":49408,"width":8,"heads":1,"layers":1}}`

const linearPreprocess = `{"size":[%d,%d],"mode":"RGB","mean":[0.48145466,0.4578275,0.40821073],"std":[0.26862954,0.26130258,0.27577711],"interpolation":"bicubic","resize_mode":"shortest","fill_color":0}`

// linearBundle writes a bundle whose towers are the linear stand-ins and
// loads it. The models are real ONNX files run by the real runtime; only
// the network is simpler than CLIP's.
func linearBundle(tb testing.TB, visual, text linearSpec) *bundle.Bundle {
	tb.Helper()
	return linearBundleSized(tb, 32, 4, visual, text)
}

// linearBundleSized is linearBundle with the config's image size and
// embedding length given.
func linearBundleSized(tb testing.TB, imageSize, embedDim int, visual, text linearSpec) *bundle.Bundle {
	tb.Helper()
	py := pythonPath()
	if err := exec.Command(py, "-c", "import onnx, numpy").Run(); err != nil {
		tb.Skipf("%s with onnx and numpy is needed to write test models: %v", py, err)
	}
	dir := tb.TempDir()
	for _, d := range []string{"visual", "textual"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	files := map[string]string{
		"config.json":                          fmt.Sprintf(linearConfig, embedDim, imageSize),
		"visual/preprocess_cfg.json":           fmt.Sprintf(linearPreprocess, imageSize, imageSize),
		"textual/bpe_simple_vocab_16e6.txt.gz": "not read by the encoder",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for path, s := range map[string]linearSpec{"visual/model.onnx": visual, "textual/model.onnx": text} {
		data, err := linearModel(py, s)
		if err != nil {
			tb.Fatalf("writing %s: %v", path, err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	b, err := bundle.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var linearModels struct {
	sync.Mutex
	bySpec map[linearSpec][]byte
}

// linearModel runs testdata/matmul_model.py once per spec per test binary:
// starting Python with onnx costs seconds.
func linearModel(py string, s linearSpec) ([]byte, error) {
	linearModels.Lock()
	defer linearModels.Unlock()
	if data, ok := linearModels.bySpec[s]; ok {
		return data, nil
	}
	tmp, err := os.MkdirTemp("", "onnxrt-linear")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "model.onnx")
	cmd := exec.Command(py, "testdata/matmul_model.py", out, s.input, s.elem, s.dims, s.output, fmt.Sprint(s.dim))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if linearModels.bySpec == nil {
		linearModels.bySpec = map[linearSpec][]byte{}
	}
	linearModels.bySpec[s] = data
	return data, nil
}

// linearWeight is W[i][j] of testdata/matmul_model.py.
func linearWeight(i, j int) float64 { return float64((i*7+j*3)%11-5) / 10 }

// linearExpect computes flatten(x) @ W for n items of itemLen values.
func linearExpect(x []float64, n, itemLen, dim int) [][]float64 {
	out := make([][]float64, n)
	for b := range out {
		out[b] = make([]float64, dim)
		for i := range itemLen {
			for j := range dim {
				out[b][j] += x[b*itemLen+i] * linearWeight(i, j)
			}
		}
	}
	return out
}

func assertClose(tb testing.TB, what string, got [][]float32, want [][]float64, tol float64) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%s: %d embeddings, want %d", what, len(got), len(want))
	}
	for b := range want {
		if len(got[b]) != len(want[b]) {
			tb.Fatalf("%s[%d]: %d values, want %d", what, b, len(got[b]), len(want[b]))
		}
		for j := range want[b] {
			if math.Abs(float64(got[b][j])-want[b][j]) > tol*math.Max(1, math.Abs(want[b][j])) {
				tb.Errorf("%s[%d][%d] = %v, want %v", what, b, j, got[b][j], want[b][j])
			}
		}
	}
}

func sharedDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("CLIPD_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "reference", "model", "expected.json")); err != nil {
		tb.Skipf("reference data missing: set CLIPD_SHARED to the shared tree with reference/model/expected.json (%v)", err)
	}
	return dir
}

func errContains(tb testing.TB, err error, parts ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			tb.Errorf("error %q lacks %q", err, p)
		}
	}
}

package model

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/engine/onnxrt"
	"github.com/clipd/clipd/internal/testmodel"
)

// copyBundle copies a bundle so that a test may break it.
func copyBundle(t *testing.T, src string) string {
	dst := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestCheckRejectsTokenizerOfAnotherSize(t *testing.T) {
	dir := copyBundle(t, testmodel.TinyBundle(t, "state"))
	cfgPath := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), `"vocab_size": 49408`, `"vocab_size": 666`, 1)
	if broken == string(data) {
		t.Fatalf("vocab_size not found in %s", data)
	}
	os.WriteFile(cfgPath, []byte(broken), 0o644)
	_, _, err = Check(dir)
	if err == nil || !strings.Contains(err.Error(), "49408 tokens") || !strings.Contains(err.Error(), "vocab_size is 666") {
		t.Fatalf("Check: %v", err)
	}
}

// TestDemoModelLoads opens the committed demo bundle, whose learnt
// vocabulary is far smaller than CLIP's.
func TestDemoModelLoads(t *testing.T) {
	b, tok, err := Check(filepath.Join(testmodel.RepoRoot(t), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != b.Config.TextCfg.VocabSize || tok.VocabSize() >= 49408 {
		t.Errorf("demo vocabulary %d, config %d", tok.VocabSize(), b.Config.TextCfg.VocabSize)
	}
}

func TestUnknownBackend(t *testing.T) {
	_, err := Open(testmodel.TinyBundle(t, "state"), Options{Backend: "cuda"})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "cuda"`) {
		t.Fatalf("Open: %v", err)
	}
}

// poisonWeights sets every value of the first float initializer of an
// ONNX file to NaN, with Debian's python3-onnx: a model that loads and
// runs, and whose every embedding is NaN.
func poisonWeights(t *testing.T, onnxPath string) {
	t.Helper()
	script := `
import sys, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
for i, init in enumerate(m.graph.initializer):
    a = numpy_helper.to_array(init)
    if a.dtype == np.float32 and a.size > 16:
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.full_like(a, np.nan), init.name))
        break
else:
    sys.exit("no float initializer")
onnx.save(m, sys.argv[1])
`
	out, err := exec.Command(testmodel.Python(), "-c", script, onnxPath).CombinedOutput()
	if err != nil {
		t.Fatalf("poisoning %s: %v\n%s", onnxPath, err, out)
	}
}

// A model whose weights give NaN must be refused when it is opened
// (clipd run and clipd check), naming the encoder, not start and fail
// every frame.
func TestOpenRefusesAModelThatGivesNaN(t *testing.T) {
	for _, tower := range []string{"visual", "textual"} {
		t.Run(tower, func(t *testing.T) {
			dir := copyBundle(t, filepath.Join(testmodel.RepoRoot(t), "models", "demo"))
			poisonWeights(t, filepath.Join(dir, tower, "model.onnx"))
			m, err := Open(dir, Options{Backend: engine.BackendONNXRuntime, ONNXRuntimeLib: os.Getenv("CLIPD_ONNXRUNTIME_LIB")})
			if err == nil {
				m.Close()
				t.Fatal("a NaN model opened")
			}
			want := map[string]string{"visual": "a probe image", "textual": "the probe prompt"}[tower]
			if !strings.Contains(err.Error(), "the model is broken") || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "NaN") {
				t.Errorf("error %q does not say the %s embedding is NaN", err, tower)
			}
		})
	}
	// The same bundle unpoisoned opens.
	m, err := Open(filepath.Join(testmodel.RepoRoot(t), "models", "demo"), Options{Backend: engine.BackendONNXRuntime, ONNXRuntimeLib: os.Getenv("CLIPD_ONNXRUNTIME_LIB")})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// With TextOnDemand the text session is opened by the first prompt to
// encode, not by Open, and gives the embeddings an eagerly opened model
// gives.
func TestTextOnDemand(t *testing.T) {
	dir := filepath.Join(testmodel.RepoRoot(t), "models", "demo")
	lib := os.Getenv("CLIPD_ONNXRUNTIME_LIB")
	lazy, err := Open(dir, Options{Backend: engine.BackendONNXRuntime, ONNXRuntimeLib: lib, TextOnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	enc := lazy.Encoder.(*onnxrt.Encoder)
	if enc.TextLoaded() {
		t.Fatal("Open loaded the text encoder")
	}
	eager, err := Open(dir, Options{Backend: engine.BackendONNXRuntime, ONNXRuntimeLib: lib})
	if err != nil {
		t.Fatal(err)
	}
	defer eager.Close()
	if !eager.Encoder.(*onnxrt.Encoder).TextLoaded() {
		t.Error("the eager model's probe did not load the text encoder")
	}
	prompts := []string{"a photo of a dog.", "a red car"}
	got, err := lazy.EncodePrompts(context.Background(), prompts)
	if err != nil {
		t.Fatal(err)
	}
	if !enc.TextLoaded() {
		t.Error("text encoder not loaded after encoding prompts")
	}
	want, err := eager.EncodePrompts(context.Background(), prompts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if c := testmodel.Cosine(got[i], want[i]); c < 0.999999 {
			t.Errorf("%q: cosine %v between the on-demand and the eager encoder", prompts[i], c)
		}
	}
}

// A NaN text encoder opened on demand is refused at its first prompts
// with the error Open gives when it probes it.
func TestTextOnDemandRefusesNaNAtFirstUse(t *testing.T) {
	dir := copyBundle(t, filepath.Join(testmodel.RepoRoot(t), "models", "demo"))
	poisonWeights(t, filepath.Join(dir, "textual", "model.onnx"))
	m, err := Open(dir, Options{Backend: engine.BackendONNXRuntime, ONNXRuntimeLib: os.Getenv("CLIPD_ONNXRUNTIME_LIB"), TextOnDemand: true})
	if err != nil {
		t.Fatalf("Open with TextOnDemand probed the text encoder: %v", err)
	}
	defer m.Close()
	for range 2 { // refused every time, not only the first
		_, err := m.EncodePrompts(context.Background(), []string{"a dog"})
		if err == nil || !strings.Contains(err.Error(), "the model is broken") || !strings.Contains(err.Error(), "the probe prompt") || !strings.Contains(err.Error(), "NaN") {
			t.Fatalf("EncodePrompts: %v", err)
		}
	}
}

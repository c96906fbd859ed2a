package trt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine/onnxrt"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/tokenizer"
)

// ortOptions finds the ONNX Runtime library the Makefile fetches, skipping
// when it is absent.
func ortOptions(tb testing.TB) onnxrt.Options {
	tb.Helper()
	lib := os.Getenv(onnxrt.LibraryEnv)
	if lib == "" {
		lib = filepath.Join(testmodel.RepoRoot(tb), "build", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(lib); err != nil {
		tb.Skipf("ONNX Runtime library missing (run `make deps` or set %s): %v", onnxrt.LibraryEnv, err)
	}
	return onnxrt.Options{LibraryPath: lib, IntraOpThreads: 1}
}

func openORT(tb testing.TB, dir string) (*bundle.Bundle, *onnxrt.Encoder) {
	tb.Helper()
	opts := ortOptions(tb)
	b, err := bundle.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := onnxrt.Open(b, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { enc.Close() })
	return b, enc
}

func probesFor(tb testing.TB, b *bundle.Bundle) []TextProbe {
	tb.Helper()
	texts, err := probeTokens(b)
	if err != nil {
		tb.Fatal(err)
	}
	return texts
}

// The guard accepts a model compared with itself, and also the opset-16
// export (decomposed LayerNorm, what TensorRT 8.5 parses) against the
// opset-17 one: both are the same network in FP32.
func TestCompareAcceptsEquivalentModels(t *testing.T) {
	ortOptions(t)
	b17, enc17 := openORT(t, testmodel.TinyBundle(t, "state"))
	_, enc16 := openORT(t, testmodel.TinyBundleOpset(t, "state", 16))
	texts := probesFor(t, b17)
	for _, cand := range []struct {
		name string
		enc  *onnxrt.Encoder
	}{{"same model", enc17}, {"opset 16", enc16}} {
		vis, txt, err := Compare(cand.enc, enc17, texts, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []Verdict{vis, txt} {
			if !v.Accept || v.WorstCosine < 0.99999 {
				t.Errorf("%s, %s: %+v", cand.name, v.Encoder, v)
			}
		}
		if len(vis.Cosines) != len(ImageProbes(224)) || len(txt.Cosines) != len(probePrompts) {
			t.Errorf("%s: cosines %v / %v", cand.name, vis.Cosines, txt.Cosines)
		}
	}
}

// A different network of the same shape (random weights) stands in for a
// broken engine: both encoders are refused, naming a probe and a cosine.
func TestCompareRefusesDifferentModel(t *testing.T) {
	ortOptions(t)
	b, ref := openORT(t, testmodel.TinyBundle(t, "state"))
	_, random := openORT(t, testmodel.RandomBundle(t, "tiny"))
	vis, txt, err := Compare(random, ref, probesFor(t, b), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []Verdict{vis, txt} {
		if v.Accept {
			t.Errorf("%s accepted: %+v", v.Encoder, v)
		}
		if !strings.Contains(v.Reason, "probe ") || !strings.Contains(v.Reason, "cosine") || v.Worst == "" {
			t.Errorf("%s reason %q", v.Encoder, v.Reason)
		}
	}
}

// The guard covers CLIP's ResNet tower the same way: the opset-16 export
// of the ModifiedResNet reference is accepted against the opset-17 one
// (probes at the bundle's own input size), random weights of the same
// shape are refused.
func TestCompareResNet(t *testing.T) {
	ortOptions(t)
	b17, enc17 := openORT(t, testmodel.TinyResNetBundle(t, "state"))
	_, enc16 := openORT(t, testmodel.TinyResNetBundleOpset(t, "jit", 16))
	_, random := openORT(t, testmodel.RandomBundle(t, "tiny-rn"))
	texts := probesFor(t, b17)
	vis, txt, err := Compare(enc16, enc17, texts, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []Verdict{vis, txt} {
		if !v.Accept || v.WorstCosine < 0.99999 {
			t.Errorf("opset 16 vs 17, %s: %+v", v.Encoder, v)
		}
	}
	if len(vis.Cosines) != len(ImageProbes(b17.ImageSize())) {
		t.Errorf("visual cosines %v", vis.Cosines)
	}
	vis, _, err = Compare(random, enc17, texts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if vis.Accept || !strings.Contains(vis.Reason, "probe ") {
		t.Errorf("random ResNet weights accepted: %+v", vis)
	}
}

func TestTextProbesEdgeOfContext(t *testing.T) {
	dir := testmodel.TinyBundle(t, "state")
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadDir(b.TokenizerDir)
	if err != nil {
		t.Fatal(err)
	}
	probes := TextProbes(tok)
	last := probes[len(probes)-1].Tokens
	if len(last) != 77 || last[76] != tok.EOT() {
		t.Errorf("long probe should end with EOT in the last slot: %v", last[70:])
	}
	if first := probes[0].Tokens; first[0] != tok.SOT() || first[76] != 0 {
		t.Errorf("short probe: %v", first[:10])
	}
}

func TestMeasureAndReport(t *testing.T) {
	ortOptions(t)
	b, enc := openORT(t, testmodel.TinyBundle(t, "state"))
	timings, err := Measure(enc, probesFor(t, b), 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(timings) != 4 {
		t.Fatalf("timings %+v", timings)
	}
	for _, tm := range timings {
		if tm.Latency <= 0 || tm.PerSecond <= 0 || (tm.Batch != 1 && tm.Batch != 4) {
			t.Errorf("timing %+v", tm)
		}
	}
	r := Report{
		Versions: VersionInfo{TensorRT: "10.3.0", TensorRTLinked: "10.3.0", Parser: "10.3.0", CUDARuntime: "12.5", CUDADriver: "12.5"},
		Verdicts: []Verdict{Decide(Visual, []Probe{{"noise", []float32{1, 0}, []float32{1, 0}}}, 0),
			Decide(Textual, []Probe{{"cat", []float32{0, 1}, []float32{1, 0}}}, 0)},
		Timings: timings,
	}
	var sb strings.Builder
	if err := r.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	for _, want := range []string{"TensorRT 10.3.0", "visual   accepted", `textual  REFUSED: textual encoder: probe "cat"`, "batch 4", "items/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func BenchmarkCompareTiny(b *testing.B) {
	bun, enc := openORT(b, testmodel.TinyBundle(b, "state"))
	texts := probesFor(b, bun)
	for b.Loop() {
		if _, _, err := Compare(enc, enc, texts, 0); err != nil {
			b.Fatal(err)
		}
	}
}

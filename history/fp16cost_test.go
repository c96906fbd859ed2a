package history

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/synth"
)

// fp16Cost compares the cosine of every stored vector (binary16) with
// every query (float32) against the float32 cosine, and each vector with
// its own binary16 copy.
func fp16Cost(stored32, queries [][]float32) (maxErr, meanErr, maxSelf float64) {
	var sum float64
	var n int
	for _, v := range stored32 {
		h := stored(v)
		self := cosine64(h, v)
		maxSelf = math.Max(maxSelf, 1-self)
		for _, q := range queries {
			exact := cosine64f(v, q)
			d := math.Abs(cosine64(h, q) - exact)
			maxErr = math.Max(maxErr, d)
			sum += d
			n++
		}
	}
	return maxErr, sum / float64(n), maxSelf
}

func cosine64f(a, b []float32) float64 {
	a64 := make([]float64, len(a))
	for i, x := range a {
		a64[i] = float64(x)
	}
	return cosine64(a64, b)
}

// TestFP16CosineCost measures what binary16 storage does to cosines, on
// real embeddings of a trained CLIP (the demo model, 64-d, on synthetic
// scenes, against its text embeddings) and on 512-d vectors shaped like
// ViT-B/32's (a shared mean direction, uneven variances, outlier
// dimensions). docs/history.md quotes the figures.
func TestFP16CosineCost(t *testing.T) {
	// 512-d CLIP-like: images share a direction (pairwise cosine about
	// 0.5, as CLIP image embeddings do), variances span two orders of
	// magnitude and two dimensions are ten times larger than the rest.
	r := rand.New(rand.NewPCG(21, 22))
	const dim = 512
	mean := randomUnit(r, dim)
	scale := make([]float64, dim)
	for i := range scale {
		scale[i] = math.Exp(r.NormFloat64())
	}
	scale[7], scale[300] = 10*scale[7], 10*scale[300]
	like := func() []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(0.06*r.NormFloat64()*scale[i]/math.Sqrt(math.E) + float64(mean[i]))
		}
		return v
	}
	var vecs, queries [][]float32
	for range 2000 {
		vecs = append(vecs, like())
	}
	for range 50 {
		queries = append(queries, like(), randomUnit(r, dim))
	}
	maxErr, meanErr, self := fp16Cost(vecs, queries)
	t.Logf("512-d CLIP-like: |cos16 - cos32| max %.2e mean %.2e; 1 - cos(v, fp16(v)) max %.2e", maxErr, meanErr, self)
	if maxErr > 1e-3 || self > 1e-5 {
		t.Errorf("binary16 costs too much: %.2e, %.2e", maxErr, self)
	}

	// The demo model's embeddings.
	root, _ := filepath.Abs("..")
	dir := filepath.Join(root, "models", "demo")
	if os.Getenv("CLIPD_ONNXRUNTIME_LIB") == "" {
		t.Setenv("CLIPD_ONNXRUNTIME_LIB", filepath.Join(root, "build", "onnxruntime", "libonnxruntime.so.1"))
	}
	if _, err := os.Stat(os.Getenv("CLIPD_ONNXRUNTIME_LIB")); err != nil {
		t.Skipf("ONNX Runtime library missing (make deps): %v", err)
	}
	m, err := model.Open(dir, model.Options{Backend: engine.BackendONNXRuntime, Threads: runtime.GOMAXPROCS(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pp := m.NewPreprocessor()
	defer pp.Close()
	const n = 64
	tensor := make([]float32, n*pp.TensorLen())
	for i := range n {
		rgb, _ := synth.Render(uint64(1000+i), synth.Options{Width: 224, Height: 224})
		if err := pp.RGB(rgb, 224, 224, 224*3, tensor[i*pp.TensorLen():(i+1)*pp.TensorLen()]); err != nil {
			t.Fatal(err)
		}
	}
	images, err := m.EncodeImages(tensor, n)
	if err != nil {
		t.Fatal(err)
	}
	texts, err := m.EncodePrompts(context.Background(), []string{"a red circle", "a blue square", "a green triangle on a striped background", "two yellow stars"})
	if err != nil {
		t.Fatal(err)
	}
	maxErr, meanErr, self = fp16Cost(images, append(texts, images...))
	t.Logf("demo model (%d-d, real embeddings): |cos16 - cos32| max %.2e mean %.2e; 1 - cos(v, fp16(v)) max %.2e", len(images[0]), maxErr, meanErr, self)
	if maxErr > 1e-3 || self > 1e-5 {
		t.Errorf("binary16 costs too much: %.2e, %.2e", maxErr, self)
	}
}

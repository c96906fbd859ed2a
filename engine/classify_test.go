package engine

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestExpandTemplates(t *testing.T) {
	if got := ExpandTemplates("dog", nil); !slices.Equal(got, []string{"a photo of a dog."}) {
		t.Errorf("default: %q", got)
	}
	got := ExpandTemplates("cat", []string{"a {} and a {}.", "itap of a {}.", "no slot"})
	if !slices.Equal(got, []string{"a cat and a cat.", "itap of a cat.", "no slot"}) {
		t.Errorf("templates: %q", got)
	}
}

func TestNormalize(t *testing.T) {
	v := Normalize([]float32{3, 4})
	if v[0] != 0.6 || v[1] != 0.8 {
		t.Errorf("got %v, want [0.6 0.8]", v)
	}
	z := Normalize([]float32{0, 0})
	if z[0] != 0 || z[1] != 0 {
		t.Errorf("zero vector became %v", z)
	}
}

func TestEnsemble(t *testing.T) {
	// Normalized: (1,0) and (0,1); mean (0.5,0.5); renormalized (1/√2, 1/√2).
	// A plain mean of the raw vectors would lean towards the longer one.
	e, err := Ensemble([][]float32{{10, 0}, {0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !near(float64(e[0]), math.Sqrt2/2, 1e-7) || !near(float64(e[1]), math.Sqrt2/2, 1e-7) {
		t.Errorf("got %v", e)
	}
	one, _ := Ensemble([][]float32{{0, -2, 0}})
	if !slices.Equal(one, []float32{0, -1, 0}) {
		t.Errorf("single prompt: %v", one)
	}
	for _, tc := range []struct {
		in   [][]float32
		want string
	}{
		{nil, "no prompt embeddings"},
		{[][]float32{{1, 0}, {1}}, "prompt embedding 1 has 1 values, prompt 0 has 2"},
		{[][]float32{{1, 0}, {0, 0}}, "prompt embedding 1 has norm 0"},
		{[][]float32{{1, 0}, {-1, 0}}, "cancel out"},
	} {
		if _, err := Ensemble(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Ensemble(%v) error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestClassifierHandChecked(t *testing.T) {
	// Image (1,0); labels at 0°, 90° and 180°: cosines 1, 0, -1.
	c, err := NewClassifier([]string{"same", "orthogonal", "opposite"},
		[][][]float32{{{2, 0}}, {{0, 5}}, {{-1, 0}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := c.Logits([]float32{7, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(logits, []float32{1, 0, -1}) {
		t.Errorf("logits %v, want [1 0 -1]", logits)
	}
	p, _ := c.Scores([]float32{7, 0})
	e := math.E
	z := e + 1 + 1/e
	want := []float64{e / z, 1 / z, 1 / e / z}
	for i := range want {
		if !near(float64(p[i]), want[i], 1e-7) {
			t.Errorf("p[%d] = %v, want %v", i, p[i], want[i])
		}
	}

	// Scale 100 makes CLIP's softmax nearly one-hot: e^-100 relative.
	c.Scale = 100
	p, _ = c.Scores([]float32{1, 0})
	if !near(float64(p[0]), 1, 1e-7) || p[1] > 1e-40 {
		t.Errorf("scale 100: %v", p)
	}
}

func TestClassifierErrors(t *testing.T) {
	emb := [][][]float32{{{1, 0}}, {{0, 1}}}
	for _, tc := range []struct {
		labels []string
		emb    [][][]float32
		scale  float32
		want   string
	}{
		{nil, nil, 1, "no labels"},
		{[]string{"a"}, emb, 1, "1 labels but embeddings for 2"},
		{[]string{"a", "b"}, emb, 0, "logit scale must be positive"},
		{[]string{"a", "b"}, emb, float32(math.Inf(1)), "logit scale must be positive"},
		{[]string{"a", "b"}, [][][]float32{{{1, 0}}, {}}, 1, `label "b": no prompt embeddings`},
		{[]string{"a", "b"}, [][][]float32{{{1, 0}}, {{1, 0, 0}}}, 1, `label "b" has 3-dimensional embeddings, label "a" has 2`},
	} {
		if _, err := NewClassifier(tc.labels, tc.emb, tc.scale); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClassifier(%v): %v, want %q", tc.labels, err, tc.want)
		}
	}
	c, _ := NewClassifier([]string{"a", "b"}, emb, 1)
	if _, err := c.Scores([]float32{1, 0, 0}); err == nil || !strings.Contains(err.Error(), "3 values, classifier expects 2") {
		t.Errorf("wrong dim: %v", err)
	}
	if _, err := c.Scores([]float32{0, 0}); err == nil || !strings.Contains(err.Error(), "norm 0") {
		t.Errorf("zero image: %v", err)
	}
}

func TestSoftmaxProperties(t *testing.T) {
	for _, logits := range [][]float32{
		{1, 2, 3},
		{1000, 999, -1000}, // overflows without the max shift
		{-1000, -1001, -1002},
		{0},
		make([]float32, 10000),
	} {
		p := Softmax(logits)
		var sum float64
		for i, x := range p {
			if math.IsNaN(float64(x)) || x < 0 || x > 1 {
				t.Fatalf("Softmax(%v)[%d] = %v", logits[:min(3, len(logits))], i, x)
			}
			sum += float64(x)
		}
		if !near(sum, 1, 1e-5) {
			t.Errorf("Softmax(%v...) sums to %v", logits[:min(3, len(logits))], sum)
		}
		// Monotone: a larger logit never gets a smaller probability.
		for i := range logits {
			for j := range logits {
				if logits[i] > logits[j] && p[i] < p[j] {
					t.Errorf("order broken at %d,%d", i, j)
				}
			}
		}
	}
	p := Softmax([]float32{1000, 999})
	want := 1 / (1 + math.Exp(-1))
	if !near(float64(p[0]), want, 1e-7) {
		t.Errorf("shifted softmax %v, want %v", p[0], want)
	}
	if Softmax(nil) != nil {
		t.Error("empty softmax not nil")
	}
}

func TestTopK(t *testing.T) {
	labels := []string{"a", "b", "c", "d", "e"}
	scores := []float32{0.1, 0.3, 0.1, 0.4, 0.1}
	got := TopK(scores, labels, 0)
	want := []Match{{"d", 0.4}, {"b", 0.3}, {"a", 0.1}, {"c", 0.1}, {"e", 0.1}}
	if !slices.Equal(got, want) {
		t.Errorf("all: %v, want %v", got, want)
	}
	if got := TopK(scores, labels, 3); !slices.Equal(got, want[:3]) {
		t.Errorf("k=3: %v", got)
	}
	if got := TopK(scores, labels, 99); len(got) != 5 {
		t.Errorf("k=99: %d matches", len(got))
	}
	if !slices.Equal(scores, []float32{0.1, 0.3, 0.1, 0.4, 0.1}) {
		t.Error("TopK modified its input")
	}
}

func BenchmarkScores1000Labels512(b *testing.B) {
	const labels, dim = 1000, 512
	names := make([]string, labels)
	emb := make([][][]float32, labels)
	for i := range emb {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(math.Sin(float64(i*dim + j)))
		}
		emb[i] = [][]float32{v}
	}
	c, err := NewClassifier(names, emb, 100)
	if err != nil {
		b.Fatal(err)
	}
	img := emb[3][0]
	for b.Loop() {
		if _, err := c.Scores(img); err != nil {
			b.Fatal(err)
		}
	}
}

package engine

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// DefaultTemplate is the prompt CLIP's README uses for zero-shot labels.
const DefaultTemplate = "a photo of a {}."

// ExpandTemplates fills every "{}" of each template with label, as CLIP's
// zero-shot notebook does with template.format(classname). No templates
// means DefaultTemplate.
func ExpandTemplates(label string, templates []string) []string {
	if len(templates) == 0 {
		templates = []string{DefaultTemplate}
	}
	prompts := make([]string, len(templates))
	for i, t := range templates {
		prompts[i] = strings.ReplaceAll(t, "{}", label)
	}
	return prompts
}

// Normalize scales v in place to unit L2 norm, accumulating in float64,
// and returns it. A zero vector is left as it is: it has no direction, and
// callers that care check with Norm.
func Normalize(v []float32) []float32 {
	n := Norm(v)
	if n == 0 {
		return v
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

// Norm is the L2 norm of v.
func Norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// CheckEmbedding says why v cannot be an embedding: values that are NaN
// or infinite, or no direction at all (all zero). A model with broken
// weights produces such vectors; they must never be scored.
func CheckEmbedding(v []float32) error {
	bad := 0
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			bad++
		}
	}
	switch {
	case len(v) == 0:
		return errors.New("empty embedding")
	case bad > 0:
		return fmt.Errorf("%d of %d values are NaN or infinite", bad, len(v))
	case Norm(v) == 0:
		return fmt.Errorf("all %d values are zero", len(v))
	}
	return nil
}

// Ensemble combines the embeddings of several prompts for one label the
// way the CLIP paper does: the mean of the L2-normalized embeddings,
// normalized again. The inputs are not modified.
func Ensemble(prompts [][]float32) ([]float32, error) {
	if len(prompts) == 0 {
		return nil, errors.New("no prompt embeddings")
	}
	dim := len(prompts[0])
	sum := make([]float64, dim)
	for i, p := range prompts {
		if len(p) != dim {
			return nil, fmt.Errorf("prompt embedding %d has %d values, prompt 0 has %d", i, len(p), dim)
		}
		n := Norm(p)
		if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("prompt embedding %d has norm %v", i, n)
		}
		for j, x := range p {
			sum[j] += float64(x) / n
		}
	}
	out := make([]float32, dim)
	var s float64
	for _, x := range sum {
		s += x * x
	}
	s = math.Sqrt(s)
	if s == 0 {
		return nil, errors.New("prompt embeddings cancel out (their mean is zero)")
	}
	for j, x := range sum {
		out[j] = float32(x / s)
	}
	return out, nil
}

// Classifier scores image embeddings against a fixed set of labels.
// It is read-only after NewClassifier, so one may be shared by goroutines.
type Classifier struct {
	Labels []string
	// Weights[i] is the unit-norm (ensembled) text embedding of Labels[i].
	Weights [][]float32
	// Scale multiplies cosine similarities before the softmax (CLIP's
	// logit_scale.exp()).
	Scale float32
}

// NewClassifier builds a classifier from, for each label, the text
// embeddings of its prompts (one or more; ensembled as in the CLIP paper).
func NewClassifier(labels []string, embeddingsPerLabel [][][]float32, scale float32) (*Classifier, error) {
	if len(labels) == 0 {
		return nil, errors.New("classifier: no labels")
	}
	if len(labels) != len(embeddingsPerLabel) {
		return nil, fmt.Errorf("classifier: %d labels but embeddings for %d", len(labels), len(embeddingsPerLabel))
	}
	if !(scale > 0) || math.IsInf(float64(scale), 0) {
		return nil, fmt.Errorf("classifier: logit scale must be positive and finite, got %v", scale)
	}
	c := &Classifier{Labels: slices.Clone(labels), Weights: make([][]float32, len(labels)), Scale: scale}
	for i, e := range embeddingsPerLabel {
		w, err := Ensemble(e)
		if err != nil {
			return nil, fmt.Errorf("classifier: label %q: %w", labels[i], err)
		}
		if i > 0 && len(w) != len(c.Weights[0]) {
			return nil, fmt.Errorf("classifier: label %q has %d-dimensional embeddings, label %q has %d", labels[i], len(w), labels[0], len(c.Weights[0]))
		}
		c.Weights[i] = w
	}
	return c, nil
}

// Dim is the embedding length the classifier expects.
func (c *Classifier) Dim() int { return len(c.Weights[0]) }

// Logits returns Scale × cosine(image, label) for every label.
func (c *Classifier) Logits(image []float32) ([]float32, error) {
	if len(image) != c.Dim() {
		return nil, fmt.Errorf("image embedding has %d values, classifier expects %d", len(image), c.Dim())
	}
	n := Norm(image)
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("image embedding has norm %v", n)
	}
	logits := make([]float32, len(c.Weights))
	for i, w := range c.Weights {
		var dot float64
		for j, x := range image {
			dot += float64(x) * float64(w[j])
		}
		logits[i] = float32(float64(c.Scale) * dot / n)
	}
	return logits, nil
}

// Scores returns the softmax over labels of Logits: CLIP's zero-shot
// probabilities, in label order.
func (c *Classifier) Scores(image []float32) ([]float32, error) {
	logits, err := c.Logits(image)
	if err != nil {
		return nil, err
	}
	return Softmax(logits), nil
}

// Softmax subtracts the largest logit before exponentiating so no term
// overflows, and sums in float64 so many small terms are not lost.
func Softmax(logits []float32) []float32 {
	if len(logits) == 0 {
		return nil
	}
	top := float64(slices.Max(logits))
	exps := make([]float64, len(logits))
	var sum float64
	for i, l := range logits {
		exps[i] = math.Exp(float64(l) - top)
		sum += exps[i]
	}
	out := make([]float32, len(logits))
	for i, e := range exps {
		out[i] = float32(e / sum)
	}
	return out
}

// Match is one label and its probability.
type Match struct {
	Label string  `json:"label"`
	Score float32 `json:"score"`
}

// TopK returns the k best labels, best first; equal scores keep label
// order. k <= 0 or k > len(scores) returns all. Extra labels or scores
// beyond the shorter of the two are ignored.
func TopK(scores []float32, labels []string, k int) []Match {
	n := min(len(scores), len(labels))
	matches := make([]Match, n)
	for i := range n {
		matches[i] = Match{Label: labels[i], Score: scores[i]}
	}
	slices.SortStableFunc(matches, func(a, b Match) int { return cmp.Compare(b.Score, a.Score) })
	if k > 0 && k < n {
		matches = matches[:k]
	}
	return matches
}

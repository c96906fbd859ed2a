package testmodel

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Expected is reference/model/expected.json (or reference-rn/model/'s):
// what the original CLIP code computed from the tiny reference checkpoints.
// Image names are relative to reference/ in both.
type Expected struct {
	Labels     []string    `json:"labels"`
	Texts      []string    `json:"texts"`
	TextEmbeds [][]float32 `json:"text_embeds"`
	LogitScale float64     `json:"logit_scale"`
	Images     []struct {
		Image         string    `json:"image"`
		ImageEmbed    []float32 `json:"image_embed"`
		Probs         []float32 `json:"probs"`
		ProbsScale100 []float32 `json:"probs_scale100"`
	} `json:"images"`
}

// LoadExpected reads the ViT reference's expected.json from the shared
// reference data, skipping the test when the data is absent.
func LoadExpected(tb testing.TB) *Expected {
	tb.Helper()
	return loadExpected(tb, "reference")
}

// LoadExpectedResNet reads the ModifiedResNet reference's expected.json
// (reference-rn/model/), whose images are those of reference/.
func LoadExpectedResNet(tb testing.TB) *Expected {
	tb.Helper()
	return loadExpected(tb, "reference-rn")
}

func loadExpected(tb testing.TB, set string) *Expected {
	tb.Helper()
	path := filepath.Join(SharedDir(tb), set, "model", "expected.json")
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Skipf("reference model data missing: %v", err)
	}
	var e Expected
	if err := json.Unmarshal(data, &e); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	if len(e.Images) == 0 || len(e.Texts) != len(e.TextEmbeds) {
		tb.Fatalf("%s: %d images, %d texts, %d text embeddings", path, len(e.Images), len(e.Texts), len(e.TextEmbeds))
	}
	return &e
}

// Cosine is the cosine similarity of a and b, accumulated in float64.
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// CIFAR100Labels writes the CLIP paper's CIFAR-100 classes with its 18
// templates (1,800 prompts) as a labels file in dir.
func CIFAR100Labels(tb testing.TB, dir string) string {
	data, err := os.ReadFile(filepath.Join(SharedDir(tb), "clip", "label_sets.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var sets map[string]json.RawMessage
	var c struct{ Classes, Templates []string }
	if err := json.Unmarshal(data, &sets); err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(sets["CIFAR100"], &c); err != nil {
		tb.Fatal(err)
	}
	if len(c.Classes) != 100 || len(c.Templates) != 18 {
		tb.Fatalf("CIFAR100: %d classes, %d templates", len(c.Classes), len(c.Templates))
	}
	var s strings.Builder
	for _, t := range c.Templates {
		s.WriteString("template: " + t + "\n")
	}
	for _, name := range c.Classes {
		s.WriteString(name + "\n")
	}
	path := filepath.Join(dir, "cifar100.labels")
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

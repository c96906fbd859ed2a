package labels

import (
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestEnsembleIsNormalizedMeanOfNormalized(t *testing.T) {
	// The second vector is not unit length: it must be normalized before
	// averaging, or it would dominate the mean.
	w, err := Ensemble([][]float32{{1, 0, 0}, {0, 4, 0}})
	if err != nil {
		t.Fatal(err)
	}
	want := float32(1 / math.Sqrt2)
	if math.Abs(float64(w[0]-want)) > 1e-6 || math.Abs(float64(w[1]-want)) > 1e-6 || w[2] != 0 {
		t.Errorf("Ensemble = %v, want [%v %v 0]", w, want, want)
	}
	if _, err := Ensemble([][]float32{{1, 0}, {1, 0, 0}}); err == nil {
		t.Error("mismatched dimensions accepted")
	}
	if _, err := Ensemble([][]float32{{0, 0}}); err == nil {
		t.Error("zero embedding accepted")
	}
	if _, err := Ensemble([][]float32{{1, 0}, {-1, 0}}); err == nil {
		t.Error("cancelling embeddings accepted")
	}
}

func TestEmbedEncodesOnlyNewPrompts(t *testing.T) {
	enc := &hashEncoder{dim: 8}
	e := NewEmbedder(enc)
	first := parseString(t, "template: a photo of a {}.\ntemplate: a drawing of a {}.\ndog\ncat\n")
	if err := e.Embed(first); err != nil {
		t.Fatal(err)
	}
	if !first.Embedded() {
		t.Fatal("labels lack weights after Embed")
	}
	var norm float64
	for _, v := range first.Labels[0].Weight {
		norm += float64(v) * float64(v)
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Errorf("weight norm² = %v, want 1", norm)
	}
	second := parseString(t, "template: a photo of a {}.\ntemplate: a drawing of a {}.\ndog\ncat\nbird\n")
	if err := e.Embed(second); err != nil {
		t.Fatal(err)
	}
	calls, encoded := enc.stats()
	if calls != 2 {
		t.Errorf("encoder called %d times, want 2", calls)
	}
	sort.Strings(encoded)
	want := []string{"a drawing of a bird.", "a drawing of a cat.", "a drawing of a dog.", "a photo of a bird.", "a photo of a cat.", "a photo of a dog."}
	if !reflect.DeepEqual(encoded, want) {
		t.Errorf("encoded %q, want each prompt once: %q", encoded, want)
	}
	if !reflect.DeepEqual(first.Labels[0].Weight, second.Labels[0].Weight) {
		t.Error("same prompts gave different weights")
	}
	e.Retain(parseString(t, "dog\n"))
	if got := e.Cached(); got != 1 {
		t.Errorf("after Retain of a set with one prompt, cache holds %d, want 1", got)
	}
}

type failingEncoder struct{}

func (failingEncoder) EncodePrompts([]string) ([][]float32, error) { return [][]float32{{1}}, nil }

func TestEmbedRejectsShortEncoderAnswer(t *testing.T) {
	err := NewEmbedder(failingEncoder{}).Embed(parseString(t, "dog\ncat\n"))
	if err == nil || !strings.Contains(err.Error(), "1 embeddings for 2 prompts") {
		t.Errorf("err = %v", err)
	}
}

func BenchmarkEnsemble80x512(b *testing.B) {
	enc := &hashEncoder{dim: 512}
	prompts := make([]string, 80)
	for i := range prompts {
		prompts[i] = strings.Repeat("x", i+1)
	}
	embs, _ := enc.EncodePrompts(prompts)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Ensemble(embs); err != nil {
			b.Fatal(err)
		}
	}
}

package labels

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The weight of a label is CLIP's ensemble of its prompts: the normalized
// mean of the normalized prompt embeddings.
func TestEmbedWeightIsNormalizedMeanOfPrompts(t *testing.T) {
	enc := &hashEncoder{dim: 16}
	set := parseString(t, "dog: a photo of a dog | a drawing of a dog\n")
	if err := NewEmbedder(enc).Embed(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	embs, _ := enc.EncodePrompts(context.Background(), []string{"a photo of a dog", "a drawing of a dog"})
	var norm float64
	mean := make([]float64, 16)
	for k := range mean {
		mean[k] = float64(embs[0][k]) + float64(embs[1][k])
		norm += mean[k] * mean[k]
	}
	for k, w := range set.Labels[0].Weight {
		if want := mean[k] / math.Sqrt(norm); math.Abs(float64(w)-want) > 1e-6 {
			t.Fatalf("weight[%d] = %v, want %v", k, w, want)
		}
	}
	if got := set.Weights(); len(got) != 1 || &got[0][0] != &set.Labels[0].Weight[0] {
		t.Error("Weights() does not list the label weights")
	}
}

func TestEmbedEncodesOnlyNewPrompts(t *testing.T) {
	enc := &hashEncoder{dim: 8}
	e := NewEmbedder(enc)
	first := parseString(t, "template: a photo of a {}.\ntemplate: a drawing of a {}.\ndog\ncat\n")
	if err := e.Embed(context.Background(), first); err != nil {
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
	if err := e.Embed(context.Background(), second); err != nil {
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

func (failingEncoder) LogitScale() float32 { return 100 }

func (failingEncoder) EncodePrompts(context.Context, []string) ([][]float32, error) {
	return [][]float32{{1}}, nil
}

func TestEmbedRejectsShortEncoderAnswer(t *testing.T) {
	err := NewEmbedder(failingEncoder{}).Embed(context.Background(), parseString(t, "dog\ncat\n"))
	if err == nil || !strings.Contains(err.Error(), "1 embeddings for 2 prompts") {
		t.Errorf("err = %v", err)
	}
}

// A reload of an unchanged CIFAR-10 file (10 labels × 18 templates): parse
// plus ensembling from the cache, the work a no-op edit costs.
func BenchmarkReloadCachedCIFAR10(b *testing.B) {
	text, err := os.ReadFile(filepath.Join("..", "examples", "labels", "cifar10.labels"))
	if err != nil {
		b.Fatal(err)
	}
	e := NewEmbedder(&hashEncoder{dim: 512})
	first, err := Parse(bytes.NewReader(text), "cifar10.labels")
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Embed(context.Background(), first); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		set, err := Parse(bytes.NewReader(text), "cifar10.labels")
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Embed(context.Background(), set); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSetTopScoresOnceAndRefusesNonFinite(t *testing.T) {
	enc := &hashEncoder{dim: 8}
	set := parseString(t, "dog\ncat\nowl\n")
	if _, err := set.Top(make([]float32, 8), 1); err == nil {
		t.Fatal("Top before Embed succeeded")
	}
	if err := NewEmbedder(enc).Embed(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	// The image embedding of "cat" ranks cat first with the logit scale applied.
	cat, _ := enc.EncodePrompts(context.Background(), []string{"a photo of a cat."})
	top, err := set.Top(cat[0], 2)
	if err != nil || len(top) != 2 || top[0].Label != "cat" || top[0].Score < 0.99 {
		t.Fatalf("Top = %+v, %v", top, err)
	}
	all, _ := set.Top(cat[0], 0)
	if len(all) != 3 {
		t.Errorf("Top(0) = %d labels, want all 3", len(all))
	}
	nan := make([]float32, 8)
	nan[3] = float32(math.NaN())
	if _, err := set.Top(nan, 1); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("NaN embedding: %v", err)
	}
}

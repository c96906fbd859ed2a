package onnxrt

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/tokenizer"
)

// readTensor reads a reference input tensor (little-endian float32 CHW).
func readTensor(tb testing.TB, path string, want int) []float32 {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(data) != 4*want {
		tb.Fatalf("%s: %d bytes, want %d", path, len(data), 4*want)
	}
	v := make([]float32, want)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return v
}

// referenceTokens maps text to clip.tokenize's ids for the rows of
// tokenizer.jsonl, to check the tokenizer on the texts used here.
func referenceTokens(tb testing.TB, shared string) map[string][]int32 {
	tb.Helper()
	f, err := os.Open(filepath.Join(shared, "reference", "tokenizer.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]int32{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var row struct {
			Text     string  `json:"text"`
			Tokens77 []int32 `json:"tokens77"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			tb.Fatalf("tokenizer.jsonl:%d: %v", line, err)
		}
		rows[row.Text] = row.Tokens77
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return rows
}

// TestReferenceParity runs the tiny reference CLIP, exported from both
// checkpoint forms at opset 17 and at the decomposed-LayerNorm opset 16
// (TensorRT 8.5), through ONNX Runtime and compares with the original
// implementation's embeddings and zero-shot probabilities.
func TestReferenceParity(t *testing.T) {
	requireRuntime(t)
	testReferenceParity(t, testmodel.LoadExpected(t), testmodel.TinyBundleOpset, true)
}

// TestResNetReferenceParity is the same for CLIP's other image tower, the
// ModifiedResNet (RN50 family): convolutions with their BatchNorms folded,
// average-pool downsampling and attention pooling.
func TestResNetReferenceParity(t *testing.T) {
	requireRuntime(t)
	testReferenceParity(t, testmodel.LoadExpectedResNet(t), testmodel.TinyResNetBundleOpset, false)
}

// testReferenceParity checks bundles made by export (form, opset) against
// want; scale100 says whether want has probs_scale100 (the ResNet
// reference carries only probs).
func testReferenceParity(t *testing.T, want *testmodel.Expected, export func(testing.TB, string, int) string, scale100 bool) {
	shared := sharedDir(t)
	refTokens := referenceTokens(t, shared)
	for _, variant := range []struct {
		form  string
		opset int
	}{{"state", 17}, {"jit", 17}, {"state", 16}, {"jit", 16}} {
		t.Run(fmt.Sprintf("%s-opset%d", variant.form, variant.opset), func(t *testing.T) {
			b, err := bundle.Load(export(t, variant.form, variant.opset))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(float64(b.LogitScale())-want.LogitScale) > 1e-5*want.LogitScale {
				t.Errorf("bundle logit_scale %v, reference %v", b.LogitScale(), want.LogitScale)
			}
			enc, err := Open(b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()

			tok, err := tokenizer.LoadDir(b.TokenizerDir)
			if err != nil {
				t.Fatal(err)
			}
			tokens := make([][]int32, len(want.Texts))
			for i, text := range want.Texts {
				tokens[i], _ = tok.Tokenize(text, tokenizer.ContextLength)
				if ref, ok := refTokens[text]; ok && !equalInt32(ref, tokens[i]) {
					t.Errorf("tokens of %q differ from tokenizer.jsonl", text)
				}
			}
			worstCos, worstProb := 1.0, 0.0
			defer func() { t.Logf("lowest cosine %.8f, largest probability error %.2e", worstCos, worstProb) }()
			textEmb, err := enc.EncodeTexts(tokens)
			if err != nil {
				t.Fatal(err)
			}
			for i := range textEmb {
				c := testmodel.Cosine(textEmb[i], want.TextEmbeds[i])
				worstCos = min(worstCos, c)
				if c < 0.99999 {
					t.Errorf("text %q: cosine %.7f to the reference", want.Texts[i], c)
				}
			}

			// All images in one batch, and the first alone: batching must
			// not change an image's embedding.
			item := 3 * b.ImageSize() * b.ImageSize()
			pixels := make([]float32, 0, len(want.Images)*item)
			for _, img := range want.Images {
				pixels = append(pixels, readTensor(t, filepath.Join(shared, "reference", img.Image+".f32"), item)...)
			}
			imgEmb, err := enc.EncodeImages(pixels, len(want.Images))
			if err != nil {
				t.Fatal(err)
			}
			single, err := enc.EncodeImages(pixels[:item], 1)
			if err != nil {
				t.Fatal(err)
			}
			if c := testmodel.Cosine(single[0], imgEmb[0]); c < 0.999999 {
				t.Errorf("batch of 1 vs batch of %d: cosine %.8f", len(want.Images), c)
			}

			perLabel := make([][][]float32, len(textEmb))
			for i, e := range textEmb {
				perLabel[i] = [][]float32{e}
			}
			clf, err := engine.NewClassifier(want.Labels, perLabel, b.LogitScale())
			if err != nil {
				t.Fatal(err)
			}
			clf100, _ := engine.NewClassifier(want.Labels, perLabel, 100)
			for i, img := range want.Images {
				c := testmodel.Cosine(imgEmb[i], img.ImageEmbed)
				worstCos = min(worstCos, c)
				if c < 0.99999 {
					t.Errorf("%s: image cosine %.7f to the reference", img.Image, c)
				}
				probs, err := clf.Scores(imgEmb[i])
				if err != nil {
					t.Fatal(err)
				}
				probs100, _ := clf100.Scores(imgEmb[i])
				if scale100 && len(img.ProbsScale100) != len(probs) {
					t.Fatalf("%s: reference has %d probs_scale100, want %d", img.Image, len(img.ProbsScale100), len(probs))
				}
				for j := range probs {
					d := math.Abs(float64(probs[j] - img.Probs[j]))
					worstProb = max(worstProb, d)
					if d > 1e-4 {
						t.Errorf("%s: p(%s) = %.6f, reference %.6f", img.Image, want.Labels[j], probs[j], img.Probs[j])
					}
					// Scale 100 sharpens differences 7x; the reference's
					// float32 rounding then allows a little more.
					if !scale100 {
						continue
					}
					if d := math.Abs(float64(probs100[j] - img.ProbsScale100[j])); d > 1e-3 {
						t.Errorf("%s: scale 100 p(%s) = %.6f, reference %.6f", img.Image, want.Labels[j], probs100[j], img.ProbsScale100[j])
					}
				}
			}
		})
	}
}

func equalInt32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package testmodel_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/engine/onnxrt"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/tokenizer"
)

func onnxRuntimeLibrary(t *testing.T) string {
	path := os.Getenv(onnxrt.LibraryEnv)
	if path == "" {
		path = filepath.Join(testmodel.RepoRoot(t), "build", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("ONNX Runtime library missing (run `make deps` or set %s): %v", onnxrt.LibraryEnv, err)
	}
	return path
}

// TestExportedGraphsMatchReference runs the exporter's output, at opset 17
// and at the decomposed-LayerNorm opset 16, through ONNX Runtime and holds
// it to the original CLIP implementation's embeddings.
func TestExportedGraphsMatchReference(t *testing.T) {
	lib := onnxRuntimeLibrary(t)
	shared := testmodel.SharedDir(t)
	want := testmodel.LoadExpected(t)
	size := 224
	pixels := make([]float32, 0, len(want.Images)*3*size*size)
	for _, img := range want.Images {
		raw, err := os.ReadFile(filepath.Join(shared, "reference", img.Image+".f32"))
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 4*3*size*size {
			t.Fatalf("%s.f32: %d bytes, want %d", img.Image, len(raw), 4*3*size*size)
		}
		for i := 0; i < len(raw); i += 4 {
			pixels = append(pixels, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
		}
	}
	for _, opset := range []int{17, 16} {
		for _, form := range []string{"state", "jit"} {
			t.Run(fmt.Sprintf("%s-opset%d", form, opset), func(t *testing.T) {
				b, err := bundle.Load(testmodel.TinyBundleOpset(t, form, opset))
				if err != nil {
					t.Fatal(err)
				}
				enc, err := onnxrt.Open(b, onnxrt.Options{LibraryPath: lib, IntraOpThreads: 1})
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
					tokens[i], _ = tok.Tokenize(text, engine.ContextLength)
				}
				texts, err := enc.EncodeTexts(tokens)
				if err != nil {
					t.Fatal(err)
				}
				images, err := enc.EncodeImages(pixels, len(want.Images))
				if err != nil {
					t.Fatal(err)
				}
				worst := 1.0
				for i := range texts {
					worst = math.Min(worst, testmodel.Cosine(texts[i], want.TextEmbeds[i]))
				}
				for i := range images {
					worst = math.Min(worst, testmodel.Cosine(images[i], want.Images[i].ImageEmbed))
				}
				t.Logf("lowest cosine to the reference: %.8f", worst)
				if worst < 0.99999 {
					t.Errorf("lowest cosine %.8f < 0.99999", worst)
				}
			})
		}
	}
}

package onnxrt

import (
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/clipd/clipd/engine"
)

func TestResolveLibrary(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope", LibraryName)
	_, _, err := resolveLibrary(missing, "", nil)
	errContains(t, err, missing, "Options.LibraryPath", "does not exist", "make deps", LibraryEnv)
	_, _, err = resolveLibrary("", missing, nil)
	errContains(t, err, missing, "$"+LibraryEnv, "does not exist")
	_, _, err = resolveLibrary(dir, "", nil)
	errContains(t, err, "is a directory")

	empty1, empty2 := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	_, _, err = resolveLibrary("", "", []string{empty1, empty2})
	errContains(t, err, LibraryName+" not found", empty1, empty2, "make deps", LibraryEnv)

	if err := os.MkdirAll(empty2, 0o755); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(empty2, LibraryName)
	if err := os.WriteFile(lib, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, origin, err := resolveLibrary("", "", []string{empty1, empty2})
	if err != nil || got != lib || origin != fromSearch {
		t.Errorf("search: %q %q %v, want %q", got, origin, err, lib)
	}
	// The environment wins over the search, the explicit path over both.
	got, origin, _ = resolveLibrary("", lib, []string{empty1})
	if got != lib || origin != fromEnv {
		t.Errorf("env: %q %q", got, origin)
	}
	got, origin, _ = resolveLibrary(lib, missing, nil)
	if got != lib || origin != fromOptions {
		t.Errorf("explicit: %q %q", got, origin)
	}
}

// pseudoRandom fills n values in [-1, 1) reproducibly.
func pseudoRandom(n int, seed uint32) []float32 {
	v := make([]float32, n)
	for i := range v {
		seed = seed*1664525 + 1013904223
		v[i] = float32(seed>>8)/float32(1<<24)*2 - 1
	}
	return v
}

func toFloat64[T float32 | int32](v []T) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func TestLinearTowers(t *testing.T) {
	requireRuntime(t)
	for _, elem := range []string{"int32", "int64"} {
		t.Run("text "+elem, func(t *testing.T) {
			text := linearText
			text.elem = elem
			b := linearBundle(t, linearImage, text)
			enc, err := Open(b, Options{IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			if enc.ImageSize() != 32 || enc.EmbedDim() != 4 || enc.Backend() != "onnxruntime" {
				t.Errorf("size %d dim %d backend %q", enc.ImageSize(), enc.EmbedDim(), enc.Backend())
			}
			const item = 3 * 32 * 32
			for _, n := range []int{1, 3, 1} { // the repeat reuses cached tensors
				pixels := pseudoRandom(n*item, uint32(n))
				got, err := enc.EncodeImages(pixels, n)
				if err != nil {
					t.Fatal(err)
				}
				assertClose(t, "image", got, linearExpect(toFloat64(pixels), n, item, 4), 1e-4)
			}
			tokens := [][]int32{make([]int32, 77), make([]int32, 77)}
			for i := range 77 {
				tokens[0][i] = int32(49406 - i*600)
				tokens[1][i] = int32(i)
			}
			got, err := enc.EncodeTexts(tokens)
			if err != nil {
				t.Fatal(err)
			}
			flat := append(toFloat64(tokens[0]), toFloat64(tokens[1])...)
			assertClose(t, "text", got, linearExpect(flat, 2, 77, 4), 1e-5)
			// Results are the caller's: a later call must not overwrite them.
			keep := append([]float32(nil), got[0]...)
			if _, err := enc.EncodeTexts(tokens[1:]); err != nil {
				t.Fatal(err)
			}
			for j := range keep {
				if keep[j] != got[0][j] {
					t.Fatalf("earlier result changed at %d", j)
				}
			}
		})
	}
}

func TestEncodeBadInput(t *testing.T) {
	requireRuntime(t)
	enc, err := Open(linearBundle(t, linearImage, linearText), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = enc.EncodeImages(make([]float32, 3*32*32), 2)
	errContains(t, err, "visual/model.onnx", "2 images of 3x32x32 need 6144 values, got 3072")
	_, err = enc.EncodeImages(nil, 0)
	errContains(t, err, "batch size must be positive, got 0")
	_, err = enc.EncodeTexts([][]int32{make([]int32, 77), make([]int32, 76)})
	errContains(t, err, "textual/model.onnx", "token array 1 has 76 ids, expected 77")
	_, err = enc.EncodeTexts(nil)
	errContains(t, err, "batch size must be positive")
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := enc.EncodeImages(make([]float32, 3*32*32), 1); err != ErrClosed {
		t.Errorf("after Close: %v", err)
	}
	if err := enc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenRejectsMismatchedModels(t *testing.T) {
	requireRuntime(t)
	for _, tc := range []struct {
		name         string
		visual, text linearSpec
		want         []string
	}{
		{"input name", linearSpec{"pixel_values", "float32", "N,3,32,32", "embedding", 4}, linearText,
			[]string{"visual/model.onnx", `expected exactly one input tensor "image"`, `"pixel_values"`}},
		{"channels", linearSpec{"image", "float32", "N,4,32,32", "embedding", 4}, linearText,
			[]string{"visual/model.onnx", `input "image" has shape [-1 4 32 32], expected [-1 3 32 32]`}},
		{"image size", linearSpec{"image", "float32", "N,3,64,64", "embedding", 4}, linearText,
			[]string{`has shape [-1 3 64 64], expected [-1 3 32 32]`}},
		{"image type", linearSpec{"image", "int32", "N,3,32,32", "embedding", 4}, linearText,
			[]string{`input "image" has element type int32, expected float32`}},
		{"embed dim", linearSpec{"image", "float32", "N,3,32,32", "embedding", 8}, linearText,
			[]string{"visual/model.onnx", `output "embedding" has shape [-1 8], expected [N 4]`}},
		{"output name", linearSpec{"image", "float32", "N,3,32,32", "image_embeds", 4}, linearText,
			[]string{`no output tensor "embedding"`, `"image_embeds"`}},
		{"context length", linearImage, linearSpec{"text", "int32", "N,76", "embedding", 4},
			[]string{"textual/model.onnx", `input "text" has shape [-1 76], expected [-1 77]`}},
		{"text name", linearImage, linearSpec{"input_ids", "int64", "N,77", "embedding", 4},
			[]string{"textual/model.onnx", `input tensor "text"`, `"input_ids"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(linearBundle(t, tc.visual, tc.text), Options{})
			errContains(t, err, tc.want...)
		})
	}
}

func TestFixedBatchModel(t *testing.T) {
	requireRuntime(t)
	enc, err := Open(linearBundle(t, linearSpec{"image", "float32", "2,3,32,32", "embedding", 4}, linearText), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	_, err = enc.EncodeImages(make([]float32, 3*32*32), 1)
	errContains(t, err, "model takes batches of exactly 2, got 1")
	if _, err := enc.EncodeImages(make([]float32, 2*3*32*32), 2); err != nil {
		t.Error(err)
	}
}

func TestSecondLibraryRefused(t *testing.T) {
	requireRuntime(t)
	b := linearBundle(t, linearImage, linearText)
	enc, err := Open(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	enc.Close()
	other := filepath.Join(t.TempDir(), LibraryName)
	_, err = Open(b, Options{LibraryPath: other})
	errContains(t, err, "already loaded from "+LibraryPath(), other)
	// The same library again, by path, is fine.
	enc, err = Open(b, Options{LibraryPath: LibraryPath()})
	if err != nil {
		t.Fatal(err)
	}
	enc.Close()
	if Version() == "" {
		t.Error("Version empty after Open")
	}
}

func TestConcurrentCalls(t *testing.T) {
	requireRuntime(t)
	enc, err := Open(linearBundle(t, linearImage, linearText), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	const item = 3 * 32 * 32
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for round := range 10 {
				n := 1 + (g+round)%3
				pixels := pseudoRandom(n*item, uint32(g*100+round))
				got, err := enc.EncodeImages(pixels, n)
				if err != nil {
					t.Error(err)
					return
				}
				want := linearExpect(toFloat64(pixels), n, item, 4)
				for b := range want {
					for j := range want[b] {
						if math.Abs(float64(got[b][j])-want[b][j]) > 1e-3 {
							t.Errorf("goroutine %d round %d: [%d][%d] = %v, want %v", g, round, b, j, got[b][j], want[b][j])
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

var _ engine.Encoder = (*Encoder)(nil)

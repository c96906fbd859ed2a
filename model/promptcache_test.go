package model

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/testmodel"
)

// The key follows every input that shapes a text embedding, and nothing
// else.
func TestPromptKeyFollowsItsInputs(t *testing.T) {
	dir := t.TempDir()
	onnx, vocab := filepath.Join(dir, "model.onnx"), filepath.Join(dir, "vocab.txt")
	os.WriteFile(onnx, []byte("text encoder"), 0o644)
	os.WriteFile(vocab, []byte("merges"), 0o644)
	key := func() [32]byte {
		t.Helper()
		k, err := promptKey(onnx, []string{vocab}, "onnxruntime fp32", 512)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key()
	if key() != base {
		t.Fatal("the key is not stable")
	}
	// A touched file with the same bytes keeps its key.
	os.Chtimes(onnx, time.Unix(0, 0), time.Unix(0, 0))
	if key() != base {
		t.Error("the key follows the file time, not its content")
	}
	for name, k := range map[string]func() ([32]byte, error){
		"tower": func() ([32]byte, error) { return promptKey(onnx, []string{vocab}, "tensorrt fp16 tensorrt=10.3", 512) },
		"dim":   func() ([32]byte, error) { return promptKey(onnx, []string{vocab}, "onnxruntime fp32", 768) },
		"no tokenizer": func() ([32]byte, error) {
			return promptKey(onnx, nil, "onnxruntime fp32", 512)
		},
	} {
		got, err := k()
		if err != nil || got == base {
			t.Errorf("%s: key unchanged (err %v)", name, err)
		}
	}
	os.WriteFile(onnx, []byte("text encoder, retrained"), 0o644)
	if key() == base {
		t.Error("new text encoder bytes keep the key")
	}
	os.WriteFile(onnx, []byte("text encoder"), 0o644)
	os.WriteFile(vocab, []byte("other merges"), 0o644)
	if key() == base {
		t.Error("a new tokenizer keeps the key")
	}
	if _, err := promptKey(filepath.Join(dir, "missing.onnx"), nil, "x", 1); err == nil {
		t.Error("a missing text encoder gave a key")
	}
}

// Opening the same bundle twice gives one key; another export of other
// weights gives another; a copy of the bundle elsewhere keeps it (the key
// is content, not paths).
func TestPromptCacheKeyOfRealBundles(t *testing.T) {
	key := func(dir string) [32]byte {
		t.Helper()
		m, err := Open(dir, Options{Backend: engine.BackendONNXRuntime})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		k, err := m.PromptCacheKey()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	state := testmodel.TinyBundle(t, "state")
	a := key(state)
	if key(state) != a {
		t.Error("the same bundle gave two keys")
	}
	if key(copyBundle(t, state)) != a {
		t.Error("a copy of the bundle gave another key")
	}
	if key(filepath.Join(testmodel.RepoRoot(t), "models", "demo")) == a {
		t.Error("the demo model shares the tiny model's key")
	}
}

func TestOpenPromptCacheStoresUnderTheKey(t *testing.T) {
	m, err := Open(testmodel.TinyBundle(t, "state"), Options{Backend: engine.BackendONNXRuntime})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	state := t.TempDir()
	c, err := m.OpenPromptCache(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	embs, err := m.EncodePrompts(context.Background(), []string{"a photo of a dog."})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put([]string{"a photo of a dog."}, embs); err != nil {
		t.Fatal(err)
	}
	again, err := m.OpenPromptCache(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := again.Get([]string{"a photo of a dog."})[0]
	if len(got) != len(embs[0]) {
		t.Fatalf("got %d values, want %d", len(got), len(embs[0]))
	}
	for i := range got {
		if got[i] != embs[0][i] {
			t.Fatalf("value %d: %v, want %v", i, got[i], embs[0][i])
		}
	}
}

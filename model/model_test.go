package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/testmodel"
)

// copyBundle copies a bundle so that a test may break it.
func copyBundle(t *testing.T, src string) string {
	dst := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestCheckRejectsTokenizerOfAnotherSize(t *testing.T) {
	dir := copyBundle(t, testmodel.TinyBundle(t, "state"))
	cfgPath := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), `"vocab_size": 49408`, `"vocab_size": 666`, 1)
	if broken == string(data) {
		t.Fatalf("vocab_size not found in %s", data)
	}
	os.WriteFile(cfgPath, []byte(broken), 0o644)
	_, _, err = Check(dir)
	if err == nil || !strings.Contains(err.Error(), "49408 tokens") || !strings.Contains(err.Error(), "vocab_size is 666") {
		t.Fatalf("Check: %v", err)
	}
}

// TestDemoModelLoads opens the committed demo bundle, whose learnt
// vocabulary is far smaller than CLIP's.
func TestDemoModelLoads(t *testing.T) {
	b, tok, err := Check(filepath.Join(testmodel.RepoRoot(t), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != b.Config.TextCfg.VocabSize || tok.VocabSize() >= 49408 {
		t.Errorf("demo vocabulary %d, config %d", tok.VocabSize(), b.Config.TextCfg.VocabSize)
	}
}

func TestUnknownBackend(t *testing.T) {
	_, err := Open(testmodel.TinyBundle(t, "state"), Options{Backend: "cuda"})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "cuda"`) {
		t.Fatalf("Open: %v", err)
	}
}

package onnxrt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/bundle"
)

// TestOpenWithoutLibrary runs Open in a fresh test process (the library,
// once loaded, stays for the process) with no usable library anywhere.
func TestOpenWithoutLibrary(t *testing.T) {
	if mode := os.Getenv("ONNXRT_TEST_CHILD"); mode != "" {
		openInChild(t, mode)
		return
	}
	dir := t.TempDir()
	notALibrary := filepath.Join(dir, LibraryName)
	if err := os.WriteFile(notALibrary, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode, lib string
		want      []string
	}{
		{"missing", filepath.Join(dir, "absent", LibraryName), []string{"does not exist", "$" + LibraryEnv, "make deps"}},
		{"garbage", notALibrary, []string{"loading ONNX Runtime from " + notALibrary, "$" + LibraryEnv}},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenWithoutLibrary$", "-test.v")
		cmd.Env = append(os.Environ(), "ONNXRT_TEST_CHILD="+tc.mode, LibraryEnv+"="+tc.lib)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: child failed: %v\n%s", tc.mode, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: child output lacks %q:\n%s", tc.mode, w, out)
			}
		}
	}
}

// openInChild opens a bundle whose model files are never read, because
// loading the library fails first, and prints the error for the parent.
func openInChild(t *testing.T, mode string) {
	dir := t.TempDir()
	files := map[string]string{
		"config.json":                          `{"embed_dim":4,"vision_cfg":{"image_size":32},"text_cfg":{"context_length":77}}`,
		"visual/preprocess_cfg.json":           `{"size":32,"mode":"RGB","mean":[0,0,0],"std":[1,1,1],"interpolation":"bicubic","resize_mode":"shortest"}`,
		"visual/model.onnx":                    "unused",
		"textual/model.onnx":                   "unused",
		"textual/bpe_simple_vocab_16e6.txt.gz": "unused",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := Open(b, Options{})
	if err == nil {
		enc.Close()
		t.Fatalf("%s: Open succeeded", mode)
	}
	t.Logf("Open error: %v", err)
	if LibraryPath() != "" {
		t.Errorf("library recorded as loaded after a failure: %q", LibraryPath())
	}
}

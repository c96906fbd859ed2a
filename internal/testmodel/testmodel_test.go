package testmodel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type bundleConfig struct {
	EmbedDim   int     `json:"embed_dim"`
	LogitScale float64 `json:"logit_scale"`
	VisionCfg  struct {
		ImageSize   int   `json:"image_size"`
		PatchSize   int   `json:"patch_size"`
		StageLayers []int `json:"stage_layers"`
		Width       int   `json:"width"`
	} `json:"vision_cfg"`
	TextCfg struct {
		ContextLength int `json:"context_length"`
		VocabSize     int `json:"vocab_size"`
	} `json:"text_cfg"`
	RandomInit *struct {
		Arch string `json:"arch"`
	} `json:"random_init"`
}

func readConfig(t *testing.T, dir string) bundleConfig {
	t.Helper()
	for _, rel := range []string{"visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx",
		"textual/bpe_simple_vocab_16e6.txt.gz"} {
		info, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("bundle %s: %v", dir, err)
		}
		if info.Size() == 0 {
			t.Fatalf("bundle %s: %s is empty", dir, rel)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg bundleConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("%s/config.json: %v", dir, err)
	}
	return cfg
}

func TestTinyBundles(t *testing.T) {
	var expected struct {
		LogitScale float64 `json:"logit_scale"`
	}
	data, err := os.ReadFile(filepath.Join(SharedDir(t), "reference", "model", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &expected); err != nil {
		t.Fatal(err)
	}
	for _, form := range []string{"state", "jit"} {
		t.Run(form, func(t *testing.T) {
			dir := TinyBundle(t, form)
			if !strings.HasPrefix(dir, filepath.Join(RepoRoot(t), "build", "testmodels")+string(filepath.Separator)) {
				t.Errorf("bundle %s is outside build/testmodels", dir)
			}
			cfg := readConfig(t, dir)
			if cfg.EmbedDim != 64 || cfg.VisionCfg.ImageSize != 224 || cfg.VisionCfg.PatchSize != 32 ||
				cfg.TextCfg.ContextLength != 77 || cfg.TextCfg.VocabSize != 49408 {
				t.Errorf("config %+v does not describe the tiny reference model", cfg)
			}
			if diff := cfg.LogitScale - expected.LogitScale; diff > 1e-4 || diff < -1e-4 {
				t.Errorf("logit_scale %v, expected.json has %v", cfg.LogitScale, expected.LogitScale)
			}
			if cfg.RandomInit != nil {
				t.Errorf("reference bundle marked random: %+v", cfg.RandomInit)
			}
			// A second call must hit the cache, not export again.
			before, err := os.Stat(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if again := TinyBundle(t, form); again != dir {
				t.Errorf("second call gave %s, first %s", again, dir)
			}
			after, err := os.Stat(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !after.ModTime().Equal(before.ModTime()) {
				t.Error("second call re-exported the bundle")
			}
		})
	}
}

// TestTinyResNetBundles exports the ModifiedResNet reference checkpoints,
// which share the cache with the ViT ones under their own names.
func TestTinyResNetBundles(t *testing.T) {
	want := LoadExpectedResNet(t)
	vit := TinyBundle(t, "state")
	for _, form := range []string{"state", "jit"} {
		t.Run(form, func(t *testing.T) {
			dir := TinyResNetBundle(t, form)
			if !strings.HasPrefix(filepath.Base(dir), "tiny-rn-"+form+"-") || filepath.Dir(dir) != filepath.Dir(vit) {
				t.Errorf("bundle %s is not tiny-rn-%s-KEY beside %s", dir, form, vit)
			}
			cfg := readConfig(t, dir)
			if cfg.EmbedDim != 64 || cfg.VisionCfg.ImageSize != 224 || cfg.VisionCfg.PatchSize != 0 ||
				fmt.Sprint(cfg.VisionCfg.StageLayers) != "[1 1 1 1]" || cfg.VisionCfg.Width != 16 ||
				cfg.TextCfg.ContextLength != 77 || cfg.TextCfg.VocabSize != 49408 {
				t.Errorf("config %+v does not describe the tiny ModifiedResNet reference", cfg)
			}
			if diff := cfg.LogitScale - want.LogitScale; diff > 1e-4 || diff < -1e-4 {
				t.Errorf("logit_scale %v, expected.json has %v", cfg.LogitScale, want.LogitScale)
			}
			if opset16 := TinyResNetBundleOpset(t, form, 16); opset16 == dir {
				t.Errorf("opset 16 shares the opset 17 bundle %s", dir)
			}
		})
	}
}

// TestConcurrentCallsShareOneExport races parallel callers on an empty
// cache, as parallel `go test` processes do, and checks that they agree on
// one complete bundle and leave no staging directories behind.
func TestConcurrentCallsShareOneExport(t *testing.T) {
	cache := t.TempDir()
	dirs := make([]string, 3)
	t.Run("callers", func(t *testing.T) {
		for i := range dirs {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				dirs[i] = bundleIn(t, cache, "random-tiny", nil, "--random-init", "tiny")
			})
		}
	})
	if t.Skipped() || t.Failed() || dirs[0] == "" {
		t.Skip("no bundle was made (see the callers' messages)")
	}
	for _, d := range dirs[1:] {
		if d != dirs[0] {
			t.Fatalf("callers got different bundles: %v", dirs)
		}
	}
	cfg := readConfig(t, dirs[0])
	if cfg.RandomInit == nil || cfg.RandomInit.Arch != "tiny" {
		t.Errorf("random bundle config lacks its random_init note: %+v", cfg)
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"random-tiny-" + filepath.Base(dirs[0])[len("random-tiny-"):], "random-tiny.lock"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("cache holds %v, want %v", names, want)
	}
}

func TestCacheKeyFollowsInputs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "exporter.py")
	if err := os.WriteFile(file, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	k1, err := cacheKey([]string{"--random-init", "tiny"}, []string{file})
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := cacheKey([]string{"--random-init", "ViT-B/32"}, []string{file})
	// A different length: digests are memoised by size and mtime, and two
	// writes this close together may share a coarse mtime.
	if err := os.WriteFile(file, []byte("v2 edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	k3, _ := cacheKey([]string{"--random-init", "tiny"}, []string{file})
	if k1 == k2 || k1 == k3 {
		t.Errorf("cache key ignores an input: %s %s %s", k1, k2, k3)
	}
	if _, err := cacheKey(nil, []string{filepath.Join(dir, "absent")}); err == nil {
		t.Error("missing input file gave no error")
	}
}

func TestPruneKeepsOtherArchitectures(t *testing.T) {
	cache := t.TempDir()
	keep := filepath.Join(cache, "random-ViT-L-14-0123456789abcdef")
	stale := filepath.Join(cache, "random-ViT-L-14-fedcba9876543210")
	other := filepath.Join(cache, "random-ViT-L-14-336px-0123456789abcdef")
	staging := filepath.Join(cache, ".random-ViT-L-14-fedcba9876543210.tmp-x1y2")
	otherStaging := filepath.Join(cache, ".random-ViT-L-14-336px-0123456789abcdef.tmp-x1y2")
	for _, d := range []string{keep, stale, other, staging, otherStaging} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pruneStale(cache, "random-ViT-L-14", keep)
	for d, want := range map[string]bool{keep: true, stale: false, other: true, staging: false, otherStaging: true} {
		_, err := os.Stat(d)
		if got := err == nil; got != want {
			t.Errorf("%s exists=%v, want %v", filepath.Base(d), got, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{"ViT-B/32": "ViT-B-32", "ViT-L/14@336px": "ViT-L-14-336px", "tiny": "tiny"} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkTinyBundleCached is the cost of a call that finds the bundle in
// the cache, which tests pay once per TinyBundle call.
func BenchmarkTinyBundleCached(b *testing.B) {
	TinyBundle(b, "state")
	b.ResetTimer()
	for b.Loop() {
		TinyBundle(b, "state")
	}
}

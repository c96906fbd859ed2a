package bundle

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/promptcache"
)

const validConfig = `{"embed_dim":512,"vision_cfg":{"image_size":224,"layers":12,"width":768,"patch_size":32},"text_cfg":{"context_length":77,"vocab_size":49408,"width":512,"heads":8,"layers":12}}`

const validPreprocess = `{
  "size": [224, 224],
  "mode": "RGB",
  "mean": [0.48145466, 0.4578275, 0.40821073],
  "std": [0.26862954, 0.26130258, 0.27577711],
  "interpolation": "bicubic",
  "resize_mode": "shortest",
  "fill_color": 0
}`

// writeBundle makes a complete bundle in a temp dir, with files overridden
// (content "" removes the file).
func writeBundle(t *testing.T, override map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		ConfigFile:                             validConfig,
		PreprocessFile:                         validPreprocess,
		VisualONNX:                             "not parsed here",
		TextualONNX:                            "not parsed here",
		"textual/bpe_simple_vocab_16e6.txt.gz": "not parsed here",
	}
	for k, v := range override {
		files[k] = v
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if content == "" {
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadValid(t *testing.T) {
	dir := writeBundle(t, nil)
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != dir || b.ImageSize() != 224 || b.EmbedDim() != 512 || b.LogitScale() != 100 {
		t.Errorf("got dir %q size %d dim %d scale %v", b.Dir, b.ImageSize(), b.EmbedDim(), b.LogitScale())
	}
	if b.VisualONNX != filepath.Join(dir, "visual", "model.onnx") || b.TextualONNX != filepath.Join(dir, "textual", "model.onnx") {
		t.Errorf("onnx paths %q %q", b.VisualONNX, b.TextualONNX)
	}
	if b.TokenizerDir != filepath.Join(dir, "textual") || b.Tokenizer.Kind != TokenizerBPEVocab ||
		len(b.Tokenizer.Files) != 1 || b.Tokenizer.Files[0] != filepath.Join(dir, "textual", "bpe_simple_vocab_16e6.txt.gz") {
		t.Errorf("tokenizer %+v in %q", b.Tokenizer, b.TokenizerDir)
	}
	want := Preprocess{Size: [2]int{224, 224}, Mode: "RGB", Mean: [3]float32{0.48145466, 0.4578275, 0.40821073},
		Std: [3]float32{0.26862954, 0.26130258, 0.27577711}, Interpolation: "bicubic", ResizeMode: "shortest"}
	if b.Preprocess != want {
		t.Errorf("preprocess %+v, want %+v", b.Preprocess, want)
	}
	if b.Config.VisionCfg != (VisionConfig{ImageSize: 224, Layers: 12, Width: 768, PatchSize: 32}) ||
		b.Config.TextCfg != (TextConfig{ContextLength: 77, VocabSize: 49408, Width: 512, Heads: 8, Layers: 12}) {
		t.Errorf("config %+v", b.Config)
	}
}

func TestLoadLogitScaleAndSquareSize(t *testing.T) {
	cfg := strings.Replace(validConfig, `{"embed_dim"`, `{"logit_scale":42.5,"embed_dim"`, 1)
	pp := strings.Replace(validPreprocess, "[224, 224]", "224", 1)
	b, err := Load(writeBundle(t, map[string]string{ConfigFile: cfg, PreprocessFile: pp}))
	if err != nil {
		t.Fatal(err)
	}
	if b.LogitScale() != 42.5 || b.Preprocess.Size != [2]int{224, 224} {
		t.Errorf("scale %v size %v", b.LogitScale(), b.Preprocess.Size)
	}
}

func TestLoadTokenizerKinds(t *testing.T) {
	for _, tc := range []struct {
		files map[string]string
		kind  TokenizerKind
		names []string
	}{
		{map[string]string{"textual/tokenizer.json": "{}", "textual/vocab.json": "{}"}, TokenizerJSON, []string{"tokenizer.json"}},
		{map[string]string{"textual/vocab.json": "{}", "textual/merges.txt": "x", "textual/bpe_simple_vocab_16e6.txt.gz": ""}, TokenizerVocabMerges, []string{"vocab.json", "merges.txt"}},
		{map[string]string{"textual/bpe_simple_vocab_16e6.txt.gz": "", "textual/bpe_simple_vocab_16e6.txt": "x"}, TokenizerBPEVocab, []string{"bpe_simple_vocab_16e6.txt"}},
	} {
		b, err := Load(writeBundle(t, tc.files))
		if err != nil {
			t.Fatalf("%v: %v", tc.kind, err)
		}
		if b.Tokenizer.Kind != tc.kind || len(b.Tokenizer.Files) != len(tc.names) {
			t.Fatalf("got %+v, want %v %v", b.Tokenizer, tc.kind, tc.names)
		}
		for i, n := range tc.names {
			if b.Tokenizer.Files[i] != filepath.Join(b.TokenizerDir, n) {
				t.Errorf("file %d = %q, want %q", i, b.Tokenizer.Files[i], n)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	cfg := func(old, new string) string { return strings.Replace(validConfig, old, new, 1) }
	pp := func(old, new string) string { return strings.Replace(validPreprocess, old, new, 1) }
	for _, tc := range []struct {
		name     string
		override map[string]string
		want     []string // all must appear in the error
	}{
		{"missing config", map[string]string{ConfigFile: ""}, []string{"config.json: missing"}},
		{"bad json", map[string]string{ConfigFile: "{\n\"embed_dim\": 512,,\n}"}, []string{"config.json:2:", "invalid JSON"}},
		{"wrong type", map[string]string{ConfigFile: cfg(`"image_size":224`, `"image_size":"224"`)}, []string{"config.json:1:", "vision_cfg.image_size", "int", "string"}},
		{"trailing data", map[string]string{ConfigFile: validConfig + "{}"}, []string{"config.json:1:", "after the JSON object"}},
		{"empty config", map[string]string{ConfigFile: " "}, []string{"config.json: empty file"}},
		{"no embed_dim", map[string]string{ConfigFile: cfg(`"embed_dim":512,`, ``)}, []string{"config.json", "embed_dim is missing"}},
		{"no image_size", map[string]string{ConfigFile: cfg(`"image_size":224,`, ``)}, []string{"vision_cfg.image_size is missing"}},
		{"huge image_size", map[string]string{ConfigFile: cfg(`"image_size":224`, `"image_size":100000`), PreprocessFile: pp("[224, 224]", "100000")},
			[]string{"config.json: vision_cfg.image_size is 100000, more than clipd accepts (1024"}},
		{"image_size past int32", map[string]string{ConfigFile: cfg(`"image_size":224`, `"image_size":4294967296`)},
			[]string{"config.json: vision_cfg.image_size is 4294967296, more than"}},
		{"huge embed_dim", map[string]string{ConfigFile: cfg(`"embed_dim":512`, `"embed_dim":1000000000`)},
			[]string{"config.json: embed_dim is 1000000000, more than clipd accepts (16384"}},
		{"huge preprocess size", map[string]string{PreprocessFile: pp("[224, 224]", "[224, 1000000]")}, []string{"preprocess_cfg.json: size: must be 1..1024, found [224 1000000]"}},
		{"context length", map[string]string{ConfigFile: cfg(`"context_length":77`, `"context_length":64`)}, []string{"text_cfg.context_length is 64, expected 77"}},
		{"vocab size", map[string]string{ConfigFile: cfg(`"vocab_size":49408`, `"vocab_size":300`)}, []string{"text_cfg.vocab_size is 300, expected at least 514"}},
		{"patch size", map[string]string{ConfigFile: cfg(`"patch_size":32`, `"patch_size":30`)}, []string{"patch_size 30 does not divide", "224"}},
		{"logit scale", map[string]string{ConfigFile: cfg(`{"embed_dim"`, `{"logit_scale":-1,"embed_dim"`)}, []string{"logit_scale must be a positive number", "-1"}},
		{"missing preprocess", map[string]string{PreprocessFile: ""}, []string{"visual/preprocess_cfg.json: missing"}},
		{"size mismatch", map[string]string{PreprocessFile: pp("[224, 224]", "[256, 256]")}, []string{"preprocess_cfg.json: size [256 256] does not match config.json vision_cfg.image_size 224"}},
		{"non-square", map[string]string{PreprocessFile: pp("[224, 224]", "[224, 200]")}, []string{"size [224 200]", "expected [224, 224]"}},
		{"bad size", map[string]string{PreprocessFile: pp("[224, 224]", "[224]")}, []string{"preprocess_cfg.json: size: must be a number or [height, width], found [224]"}},
		{"no size", map[string]string{PreprocessFile: pp(`"size": [224, 224],`, ``)}, []string{"preprocess_cfg.json: size: missing"}},
		{"mode", map[string]string{PreprocessFile: pp(`"RGB"`, `"BGR"`)}, []string{`unsupported mode "BGR"`, "RGB"}},
		{"interpolation", map[string]string{PreprocessFile: pp(`"bicubic"`, `"bilinear"`)}, []string{`unsupported interpolation "bilinear"`}},
		{"resize mode", map[string]string{PreprocessFile: pp(`"shortest"`, `"squash"`)}, []string{`unsupported resize_mode "squash"`}},
		{"mean length", map[string]string{PreprocessFile: pp(`[0.48145466, 0.4578275, 0.40821073]`, `[0.5]`)}, []string{"mean must have 3 values", "found 1"}},
		{"std zero", map[string]string{PreprocessFile: pp(`0.26130258`, `0`)}, []string{"std[1] must be positive"}},
		{"missing visual", map[string]string{VisualONNX: ""}, []string{"visual/model.onnx: missing"}},
		{"missing textual", map[string]string{TextualONNX: ""}, []string{"textual/model.onnx: missing"}},
		{"no tokenizer", map[string]string{"textual/bpe_simple_vocab_16e6.txt.gz": ""}, []string{"textual: no tokenizer"}},
		{"vocab without merges", map[string]string{"textual/bpe_simple_vocab_16e6.txt.gz": "", "textual/vocab.json": "{}"}, []string{"vocab.json without merges.txt"}},
		{"merges without vocab", map[string]string{"textual/bpe_simple_vocab_16e6.txt.gz": "", "textual/merges.txt": "x"}, []string{"merges.txt without vocab.json"}},
		{"two bpe", map[string]string{"textual/bpe_simple_vocab_v2.txt": "x"}, []string{"several BPE vocabularies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeBundle(t, tc.override)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "bundle "+dir+": ") {
				t.Errorf("error %q does not start with the bundle dir", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestLoadEmptyModelAndNotDir(t *testing.T) {
	dir := writeBundle(t, nil)
	if err := os.WriteFile(filepath.Join(dir, "visual", "model.onnx"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "visual/model.onnx: empty file") {
		t.Errorf("empty model: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "config.json")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as dir: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing dir: %v", err)
	}
}

// open_clip and immich write a ResNet's vision_cfg.layers as its stage
// depths; clipd's exporter as their total.
func TestVisionLayersOfResNetExports(t *testing.T) {
	for doc, want := range map[string]Layers{
		`{"embed_dim":1024,"vision_cfg":{"image_size":224,"layers":[3,4,6,3],"width":64},"text_cfg":{"context_length":77}}`:                             16,
		`{"embed_dim":64,"vision_cfg":{"image_size":64,"layers":4,"stage_layers":[1,1,1,1],"width":16},"text_cfg":{"context_length":77}}`:               4,
		`{"embed_dim":512,"vision_cfg":{"image_size":224,"layers":12,"width":768,"patch_size":32},"text_cfg":{"context_length":77,"vocab_size":49408}}`: 12,
	} {
		c, err := ParseConfig("config.json", []byte(doc))
		if err != nil || c.VisionCfg.Layers != want {
			t.Errorf("%s: layers %d, %v; want %d", doc, c.VisionCfg.Layers, err, want)
		}
	}
	for _, bad := range []string{`[3,0,6,3]`, `"twelve"`, `[1.5]`} {
		doc := `{"embed_dim":64,"vision_cfg":{"image_size":64,"layers":` + bad + `},"text_cfg":{"context_length":77}}`
		if _, err := ParseConfig("config.json", []byte(doc)); err == nil || !strings.Contains(err.Error(), "layers") {
			t.Errorf("layers %s: %v", bad, err)
		}
	}
}

// The bounds admit every released CLIP model with room to spare, the
// largest values themselves included, and the embedding bound is the
// prompt cache's.
func TestSizeBoundsAdmitTheLargest(t *testing.T) {
	cfg := strings.NewReplacer(`"embed_dim":512`, fmt.Sprintf(`"embed_dim":%d`, MaxEmbedDim),
		`"image_size":224`, fmt.Sprintf(`"image_size":%d`, MaxImageSize)).Replace(validConfig)
	c, err := ParseConfig(ConfigFile, []byte(cfg))
	if err != nil || c.EmbedDim != MaxEmbedDim || c.VisionCfg.ImageSize != MaxImageSize {
		t.Fatalf("%+v, %v", c, err)
	}
	p, err := ParsePreprocess(PreprocessFile, []byte(strings.Replace(validPreprocess, "[224, 224]", fmt.Sprint(MaxImageSize), 1)))
	if err != nil || Check(c, p) != nil {
		t.Fatalf("%+v, %v", p, err)
	}
	if MaxEmbedDim != promptcache.MaxDim {
		t.Errorf("MaxEmbedDim %d, the prompt cache holds up to %d", MaxEmbedDim, promptcache.MaxDim)
	}
}

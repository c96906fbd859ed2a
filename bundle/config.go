// Package bundle reads a CLIP model bundle laid out as immich ships them:
//
//	config.json                 embed_dim, vision_cfg, text_cfg, optional logit_scale
//	visual/model.onnx           image encoder
//	visual/preprocess_cfg.json  size, mode, mean, std, interpolation, resize_mode
//	textual/model.onnx          text encoder
//	textual/<tokenizer files>   tokenizer.json, vocab.json+merges.txt, or bpe_simple_vocab*.txt[.gz]
//
// Parsing (ParseConfig, ParsePreprocess, Check, FindTokenizer) is pure and
// separate from Load, which reads the directory.
package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"

	"github.com/clipd/clipd/tokenizer"
)

// Names of the files inside a bundle, relative to its root.
const (
	ConfigFile     = "config.json"
	VisualONNX     = "visual/model.onnx"
	PreprocessFile = "visual/preprocess_cfg.json"
	TextualONNX    = "textual/model.onnx"
	TokenizerDir   = "textual"
)

// VocabSize is that of OpenAI's
// vocabulary; bundles with a vocabulary of their own (the demo model's
// learnt one) are valid as long as the tokenizer in textual/ has exactly
// config.json's vocab_size entries, which package model checks.
const VocabSize = 49408

// Upper bounds of the sizes config.json declares, which clipd allocates
// by: an image tensor is 3 x image_size² float32 per image and batch slot,
// an embedding embed_dim float32 per image, prompt and cache entry. A
// hostile or mistyped file (image_size 100000) must fail to load, not
// allocate gigabytes or panic in makeslice. The released models are far
// below: OpenAI's largest input is RN50x64's 448 (ViT-L/14@336px: 336),
// its widest embedding 1024, open_clip's ViT-bigG 1280.
const (
	// MaxImageSize: 1024 pixels a side is 12 MiB per image tensor.
	MaxImageSize = 1024
	// MaxEmbedDim is the prompt cache's bound (promptcache.MaxDim; a test
	// keeps the two equal), so that every model's prompts can be cached.
	MaxEmbedDim = 16384
)

// DefaultLogitScale is CLIP's trained temperature (exp(4.6052) = 100), used
// when config.json does not carry the checkpoint's own value.
const DefaultLogitScale = 100

// What the image preprocessing implements. Other values (open_clip's
// "squash", "bilinear", ...) would silently change the embeddings, so they
// are rejected when the bundle is loaded rather than approximated.
var (
	SupportedModes          = []string{"RGB"}
	SupportedInterpolations = []string{"bicubic"}
	SupportedResizeModes    = []string{"shortest"}
)

// VisionConfig is config.json's vision_cfg.
type VisionConfig struct {
	ImageSize int    `json:"image_size"`
	Layers    Layers `json:"layers"`
	Width     int    `json:"width"`
	PatchSize int    `json:"patch_size"`
}

// Layers is vision_cfg.layers: a ViT's layer count, or the blocks of a
// ModifiedResNet, which open_clip and immich write as the stage depths
// ([3, 4, 6, 3] for RN50) and clipd's exporter as their total (with the
// depths in stage_layers). It is the total either way; the graph itself
// is in the ONNX file.
type Layers int

// UnmarshalJSON takes a number or a list of stage depths.
func (l *Layers) UnmarshalJSON(data []byte) error {
	var n int
	if err := json.Unmarshal(data, &n); err == nil {
		*l = Layers(n)
		return nil
	}
	var stages []int
	if err := json.Unmarshal(data, &stages); err != nil {
		return &json.UnmarshalTypeError{Value: "layers", Type: reflect.TypeFor[int](), Field: "vision_cfg.layers"}
	}
	total := 0
	for _, d := range stages {
		if d <= 0 {
			return fmt.Errorf("vision_cfg.layers: stage depths must be positive, found %v", stages)
		}
		total += d
	}
	*l = Layers(total)
	return nil
}

// TextConfig is config.json's text_cfg.
type TextConfig struct {
	ContextLength int `json:"context_length"`
	VocabSize     int `json:"vocab_size"`
	Width         int `json:"width"`
	Heads         int `json:"heads"`
	Layers        int `json:"layers"`
}

// Config is config.json.
type Config struct {
	EmbedDim  int          `json:"embed_dim"`
	VisionCfg VisionConfig `json:"vision_cfg"`
	TextCfg   TextConfig   `json:"text_cfg"`
	// LogitScale is the multiplier of cosine similarities (already
	// exponentiated, as CLIP's logit_scale.exp()); nil when absent.
	LogitScale *float64 `json:"logit_scale,omitempty"`
}

// Preprocess is visual/preprocess_cfg.json.
type Preprocess struct {
	// Size is [height, width]; a bare number in the file means a square.
	Size          [2]int     `json:"size"`
	Mode          string     `json:"mode"`
	Mean          [3]float32 `json:"mean"`
	Std           [3]float32 `json:"std"`
	Interpolation string     `json:"interpolation"`
	ResizeMode    string     `json:"resize_mode"`
	FillColor     int        `json:"fill_color"`
}

// ParseConfig decodes and checks config.json; name is used in errors.
func ParseConfig(name string, data []byte) (Config, error) {
	var c Config
	if err := decodeStrict(name, data, &c); err != nil {
		return Config{}, err
	}
	positive := []struct {
		key string
		v   int
	}{
		{"embed_dim", c.EmbedDim},
		{"vision_cfg.image_size", c.VisionCfg.ImageSize},
		{"text_cfg.context_length", c.TextCfg.ContextLength},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return Config{}, fmt.Errorf("%s: %s is missing or not positive (found %d)", name, p.key, p.v)
		}
	}
	bounded := []struct {
		key    string
		v, max int
	}{
		{"embed_dim", c.EmbedDim, MaxEmbedDim},
		{"vision_cfg.image_size", c.VisionCfg.ImageSize, MaxImageSize},
	}
	for _, b := range bounded {
		if b.v > b.max {
			return Config{}, fmt.Errorf("%s: %s is %d, more than clipd accepts (%d; CLIP models use far less)", name, b.key, b.v, b.max)
		}
	}
	if c.TextCfg.ContextLength != tokenizer.ContextLength {
		return Config{}, fmt.Errorf("%s: text_cfg.context_length is %d, expected %d (CLIP's tokenizer)", name, c.TextCfg.ContextLength, tokenizer.ContextLength)
	}
	// 256 byte symbols, the same with </w>, SOT and EOT: the smallest BPE.
	if v := c.TextCfg.VocabSize; v != 0 && v < 514 {
		return Config{}, fmt.Errorf("%s: text_cfg.vocab_size is %d, expected at least 514 (CLIP's byte symbols, twice, plus SOT and EOT)", name, v)
	}
	if p := c.VisionCfg.PatchSize; p < 0 || (p > 0 && c.VisionCfg.ImageSize%p != 0) {
		return Config{}, fmt.Errorf("%s: vision_cfg.patch_size %d does not divide vision_cfg.image_size %d", name, p, c.VisionCfg.ImageSize)
	}
	if s := c.LogitScale; s != nil && (!(*s > 0) || math.IsInf(*s, 0)) {
		return Config{}, fmt.Errorf("%s: logit_scale must be a positive number (the exponentiated temperature), found %v", name, *s)
	}
	return c, nil
}

// ParsePreprocess decodes and checks preprocess_cfg.json; name is used in
// errors.
func ParsePreprocess(name string, data []byte) (Preprocess, error) {
	var raw struct {
		Size          json.RawMessage `json:"size"`
		Mode          string          `json:"mode"`
		Mean          []float32       `json:"mean"`
		Std           []float32       `json:"std"`
		Interpolation string          `json:"interpolation"`
		ResizeMode    string          `json:"resize_mode"`
		FillColor     int             `json:"fill_color"`
	}
	if err := decodeStrict(name, data, &raw); err != nil {
		return Preprocess{}, err
	}
	p := Preprocess{
		Mode:          raw.Mode,
		Interpolation: raw.Interpolation,
		ResizeMode:    raw.ResizeMode,
		FillColor:     raw.FillColor,
	}
	size, err := parseSize(raw.Size)
	if err != nil {
		return Preprocess{}, fmt.Errorf("%s: size: %w", name, err)
	}
	p.Size = size
	for key, v := range map[string][]float32{"mean": raw.Mean, "std": raw.Std} {
		if len(v) != 3 {
			return Preprocess{}, fmt.Errorf("%s: %s must have 3 values (R, G, B), found %d", name, key, len(v))
		}
	}
	copy(p.Mean[:], raw.Mean)
	copy(p.Std[:], raw.Std)
	for i, s := range p.Std {
		if !(s > 0) {
			return Preprocess{}, fmt.Errorf("%s: std[%d] must be positive, found %v", name, i, s)
		}
	}
	choices := []struct {
		key, v    string
		supported []string
	}{
		{"mode", p.Mode, SupportedModes},
		{"interpolation", p.Interpolation, SupportedInterpolations},
		{"resize_mode", p.ResizeMode, SupportedResizeModes},
	}
	for _, c := range choices {
		if !slices.Contains(c.supported, c.v) {
			return Preprocess{}, fmt.Errorf("%s: unsupported %s %q (supported: %q)", name, c.key, c.v, c.supported)
		}
	}
	return p, nil
}

func parseSize(raw json.RawMessage) ([2]int, error) {
	if len(raw) == 0 {
		return [2]int{}, errors.New("missing")
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		if one <= 0 || one > MaxImageSize {
			return [2]int{}, fmt.Errorf("must be 1..%d, found %d", MaxImageSize, one)
		}
		return [2]int{one, one}, nil
	}
	var two []int
	if len(raw) > 64 || json.Unmarshal(raw, &two) != nil || len(two) != 2 {
		return [2]int{}, fmt.Errorf("must be a number or [height, width], found %.64s", raw)
	}
	if two[0] <= 0 || two[1] <= 0 || two[0] > MaxImageSize || two[1] > MaxImageSize {
		return [2]int{}, fmt.Errorf("must be 1..%d, found %v", MaxImageSize, two)
	}
	return [2]int{two[0], two[1]}, nil
}

// Check reports inconsistencies between config.json and
// preprocess_cfg.json.
func Check(c Config, p Preprocess) error {
	s := c.VisionCfg.ImageSize
	if p.Size != [2]int{s, s} {
		return fmt.Errorf("%s: size %v does not match %s vision_cfg.image_size %d (expected [%d, %d])", PreprocessFile, p.Size[:], ConfigFile, s, s, s)
	}
	return nil
}

// decodeStrict decodes one JSON value and turns decoder errors into ones
// that name the file, the line and column, and the offending key.
func decodeStrict(name string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			line, col := lineCol(data, syn.Offset)
			return fmt.Errorf("%s:%d:%d: invalid JSON: %v", name, line, col, syn)
		case errors.As(err, &typ):
			line, col := lineCol(data, typ.Offset)
			return fmt.Errorf("%s:%d:%d: key %s: expected %s, found JSON %s", name, line, col, typ.Field, typ.Type, typ.Value)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s: empty file", name)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if dec.More() {
		line, col := lineCol(data, dec.InputOffset())
		return fmt.Errorf("%s:%d:%d: unexpected data after the JSON object", name, line, col)
	}
	return nil
}

func lineCol(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

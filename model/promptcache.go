package model

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/engine/onnxrt"
	"github.com/clipd/clipd/promptcache"
	"github.com/clipd/clipd/tokenizer"
	"github.com/clipd/clipd/trt"
)

// promptKeyFormat is bumped when something the key does not hash changes
// what a prompt's embedding is (tokenizer code, normalization), so that
// older cached embeddings are no longer found.
const promptKeyFormat = 1

// PromptCacheKey identifies everything that turns a prompt into this
// model's text embedding: the text encoder's ONNX bytes, the tokenizer
// files, the context length, and the backend and precision the text tower
// actually runs at (a TensorRT text engine that the accuracy guard refused
// runs on FP32 ONNX Runtime and shares that key). On ONNX Runtime, two
// models with the same key give the same embeddings, so they may share
// cached ones. On TensorRT the key names the engine's TensorRT and GPU,
// but not the engine: a rebuild (after a cache loss, another batch
// profile) may choose other kernels, and its embeddings then agree with
// the cached ones within the accuracy guard's tolerance (cosine 0.999 to
// FP32), not bit for bit.
func (m *Model) PromptCacheKey() (promptcache.ModelKey, error) {
	tower, err := textTower(m.Encoder)
	if err != nil {
		return promptcache.ModelKey{}, err
	}
	return promptKey(m.Bundle.TextualONNX, m.Bundle.Tokenizer.Files, tower, m.Encoder.EmbedDim())
}

// OpenPromptCache opens this model's prompt cache in stateDir, bounded to
// maxBytes for every model together (0: promptcache.DefaultMaxBytes;
// promptcache.NoEviction: compacted but never evicted by this process).
func (m *Model) OpenPromptCache(stateDir string, maxBytes int64) (*promptcache.Cache, error) {
	key, err := m.PromptCacheKey()
	if err != nil {
		return nil, err
	}
	return promptcache.Open(promptcache.Config{
		StateDir: stateDir, Model: key, Dim: m.Encoder.EmbedDim(), MaxBytes: maxBytes, Log: m.log,
	})
}

// textTower names the arithmetic of the text encoder as opened.
func textTower(enc engine.Encoder) (string, error) {
	switch e := enc.(type) {
	case *onnxrt.Encoder:
		return "onnxruntime fp32", nil
	case *trt.Encoder:
		if _, text := e.Verdicts(); !text.Accept {
			return "onnxruntime fp32", nil
		}
		// An engine's numerics follow the TensorRT version and the GPU
		// that chose its kernels, as its engine cache key does. The
		// precision is the one asked for: TensorRT builds FP32 where the
		// GPU has no fast FP16 (platformHasFastFp16), which the GPU and
		// compute capability named here already decide, so the key still
		// separates such engines; only its "fp16" is then a misnomer. The
		// engine does not report what it was built with (a cached plan
		// does not say), so the key cannot name it.
		v, err := trt.Versions()
		if err != nil {
			return "", err
		}
		d, err := trt.DeviceInfo()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("tensorrt %s tensorrt=%s gpu=%q compute=%s", trt.FP16, v.TensorRTLinked, d.Name, d.ComputeCapability()), nil
	}
	return "", fmt.Errorf("no prompt cache key for the %q backend", enc.Backend())
}

// promptKey hashes the inputs of PromptCacheKey, one named line each.
func promptKey(textualONNX string, tokenizerFiles []string, tower string, dim int) (promptcache.ModelKey, error) {
	h := sha256.New()
	line := func(name, value string) { fmt.Fprintf(h, "%s=%s\n", name, strconv.Quote(value)) }
	line("format", strconv.Itoa(promptKeyFormat))
	line("context_length", strconv.Itoa(tokenizer.ContextLength))
	line("embed_dim", strconv.Itoa(dim))
	line("text_tower", tower)
	sum, err := trt.FileSHA256(textualONNX)
	if err != nil {
		return promptcache.ModelKey{}, err
	}
	line("textual_onnx_sha256", sum)
	for _, f := range tokenizerFiles {
		sum, err := trt.FileSHA256(f)
		if err != nil {
			return promptcache.ModelKey{}, err
		}
		line("tokenizer "+filepath.Base(f)+" sha256", sum)
	}
	return promptcache.ModelKey(h.Sum(nil)), nil
}

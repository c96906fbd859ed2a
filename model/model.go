// Package model opens a CLIP model bundle for inference: it loads the bundle,
// its tokenizer and its preprocessing settings, picks a backend, and offers
// the few operations every clipd command needs (embed prompts, embed images,
// build a zero-shot classifier).
package model

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/engine/onnxrt"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/tokenizer"
	"github.com/clipd/clipd/trt"
)

// DefaultTextIdle is how long a long-running process keeps the ONNX Runtime
// text session open without a prompt to encode (Options.TextIdle). Label
// edits and ad-hoc labels come in bursts; between them the session's
// weights (250 MB for ViT-B/32) are better returned. Reopening takes about
// half a second of CPU for ViT-B/32.
const DefaultTextIdle = time.Minute

// textBatch bounds one text-encoder call so that a labels file with
// thousands of prompts does not need one giant tensor.
const textBatch = 64

// Options configure Open. The zero value uses ONNX Runtime found the usual
// way (see onnxrt.Options).
type Options struct {
	Backend        string
	ONNXRuntimeLib string
	Threads        int
	// Spinning lets ONNX Runtime's threads busy-wait between calls (see
	// onnxrt.Options.Spinning).
	Spinning bool
	// TextOnDemand leaves the text encoder's probe to the first
	// EncodePrompts instead of Open, so that the ONNX Runtime text
	// session is only opened when a prompt needs encoding: a daemon or a
	// one-shot command whose prompts are all cached never loads it.
	TextOnDemand bool
	// TextIdle closes the ONNX Runtime text session after that long
	// without a prompt to encode; 0 keeps it (see onnxrt.Options.TextIdle).
	TextIdle time.Duration
	// EngineCache and MaxBatch configure the TensorRT backend.
	EngineCache string
	MaxBatch    int
	// OptBatch is the batch size TensorRT optimizes for (the number of
	// cameras); 0 means 1.
	OptBatch int
	Log      *slog.Logger
	// Progress receives human-readable lines during long work (TensorRT
	// engine builds), e.g. for systemd STATUS.
	Progress func(string)
	// OpenEncoder, if set, opens the encoder instead of the backends,
	// for tests that drive the daemon with a scripted encoder behind a
	// real bundle.
	OpenEncoder func(*bundle.Bundle) (engine.Encoder, error)
}

// Model is an opened bundle. It is safe for concurrent use, except that
// each goroutine needs its own Preprocessor (NewPreprocessor).
type Model struct {
	Bundle    *bundle.Bundle
	Tokenizer *tokenizer.Tokenizer
	Encoder   engine.Encoder
	log       *slog.Logger

	// textProbed is set once the text encoder passed its probe: by Open,
	// or with Options.TextOnDemand by the first EncodePrompts.
	textMu     sync.Mutex
	textProbed bool
}

// Open loads the bundle in dir and starts its encoders.
func Open(dir string, opts Options) (*Model, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, tok, err := Check(dir)
	if err != nil {
		return nil, err
	}
	open := opts.OpenEncoder
	if open == nil {
		open = func(b *bundle.Bundle) (engine.Encoder, error) { return openEncoder(b, opts, log) }
	}
	enc, err := open(b)
	if err != nil {
		return nil, err
	}
	m := &Model{Bundle: b, Tokenizer: tok, Encoder: enc, log: log}
	if err := m.probe(!opts.TextOnDemand); err != nil {
		enc.Close()
		return nil, err
	}
	m.textProbed = !opts.TextOnDemand
	return m, nil
}

// probeText runs the text half of the probe the first time prompts are
// encoded by a model opened with TextOnDemand, so that a broken text
// encoder fails with the same error as at Open, not with NaN scores.
func (m *Model) probeText() error {
	m.textMu.Lock()
	defer m.textMu.Unlock()
	if m.textProbed {
		return nil
	}
	if err := m.probeTextEncoder(); err != nil {
		return err
	}
	m.textProbed = true
	return nil
}

// Probe runs one image and one prompt through the encoders and refuses a
// model whose embeddings are not finite, non-zero vectors of the declared
// size: broken weights (an FP16 overflow in an export, a truncated file
// that still parses) would otherwise start and then fail every frame.
func (m *Model) Probe() error { return m.probe(true) }

func (m *Model) probe(text bool) error {
	pre := m.NewPreprocessor()
	defer pre.Close()
	const side = 64
	rgb := make([]byte, side*side*3)
	for i := range rgb {
		// A colour gradient: every channel and many values, unlike a flat
		// grey that a broken model might still map to something finite.
		rgb[i] = byte((i*7 + i/(side*3)*13) % 256)
	}
	tensor := make([]float32, pre.TensorLen())
	if err := pre.RGB(rgb, side, side, 0, tensor); err != nil {
		return fmt.Errorf("%s: preparing the probe image: %w", m.Bundle.Dir, err)
	}
	imgs, err := m.Encoder.EncodeImages(tensor, 1)
	if err != nil {
		return fmt.Errorf("%s: the image encoder failed on a probe image: %w", m.Bundle.Dir, err)
	}
	if err := m.checkEmbeddings("a probe image", 1, imgs); err != nil {
		return err
	}
	if !text {
		return nil
	}
	return m.probeTextEncoder()
}

func (m *Model) probeTextEncoder() error {
	texts, err := m.Encoder.EncodeTexts([][]int32{m.Tokenize(probePrompt)})
	if err != nil {
		return fmt.Errorf("%s: the text encoder failed on the probe prompt %q: %w", m.Bundle.Dir, probePrompt, err)
	}
	return m.checkEmbeddings(fmt.Sprintf("the probe prompt %q", probePrompt), 1, texts)
}

// checkEmbeddings refuses embeddings that are not n finite, non-zero
// vectors of the model's size; what names the input in the error.
func (m *Model) checkEmbeddings(what string, n int, embs [][]float32) error {
	if len(embs) != n {
		return fmt.Errorf("%s: %s gave %d embeddings, want %d", m.Bundle.Dir, what, len(embs), n)
	}
	for _, e := range embs {
		if len(e) != m.Encoder.EmbedDim() {
			return fmt.Errorf("%s: %s gave an embedding of %d values, want %d", m.Bundle.Dir, what, len(e), m.Encoder.EmbedDim())
		}
		if err := engine.CheckEmbedding(e); err != nil {
			return fmt.Errorf("%s: the model is broken: the embedding of %s is unusable (%v); re-export it or check its weights", m.Bundle.Dir, what, err)
		}
	}
	return nil
}

const probePrompt = "a photo of a cat."

// Check loads and validates the bundle in dir and its tokenizer without
// starting any encoder (clipd check).
func Check(dir string) (*bundle.Bundle, *tokenizer.Tokenizer, error) {
	b, err := bundle.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	tok, err := tokenizer.LoadDir(b.TokenizerDir)
	if err != nil {
		return nil, nil, err
	}
	if want := b.Config.TextCfg.VocabSize; want != 0 && tok.VocabSize() != want {
		return nil, nil, fmt.Errorf("%s: the tokenizer in %s has %d tokens but config.json text_cfg.vocab_size is %d",
			b.Dir, b.TokenizerDir, tok.VocabSize(), want)
	}
	return b, tok, nil
}

func openEncoder(b *bundle.Bundle, opts Options, log *slog.Logger) (engine.Encoder, error) {
	ortOpts := onnxrt.Options{LibraryPath: opts.ONNXRuntimeLib, IntraOpThreads: opts.Threads,
		Spinning: opts.Spinning, TextIdle: opts.TextIdle}
	backend, reason, err := engine.SelectBackend(opts.Backend, trt.Available())
	if err != nil {
		return nil, err
	}
	if backend == engine.BackendONNXRuntime {
		if reason != "requested" {
			log.Info("using ONNX Runtime on the CPU", "reason", reason)
		}
		return onnxrt.Open(b, ortOpts)
	}
	enc, err := openTensorRT(b, opts, log)
	if err == nil || opts.Backend == engine.BackendTensorRT {
		return enc, err
	}
	log.Warn("TensorRT failed; using ONNX Runtime on the CPU", "err", err)
	return onnxrt.Open(b, ortOpts)
}

// Close stops the encoders.
func (m *Model) Close() error { return m.Encoder.Close() }

// LogitScale is the multiplier of cosine similarities before the softmax.
func (m *Model) LogitScale() float32 { return m.Bundle.LogitScale() }

// PreprocessConfig is the input geometry and normalization of the bundle.
func (m *Model) PreprocessConfig() preprocess.Config {
	p := m.Bundle.Preprocess
	return preprocess.Config{Size: m.Bundle.ImageSize(), Mean: p.Mean, Std: p.Std}
}

// NewPreprocessor returns a preprocessor for this model's inputs; each
// goroutine needs its own. Close it when done.
func (m *Model) NewPreprocessor() *preprocess.Preprocessor {
	return preprocess.New(m.PreprocessConfig())
}

// Tokenize returns the context-length token array of text, logging when the
// text had to be truncated (CLIP does the same silently with truncate=True).
func (m *Model) Tokenize(text string) []int32 {
	ids, truncated := m.Tokenizer.Tokenize(text, tokenizer.ContextLength)
	if truncated {
		m.log.Warn("prompt truncated to the model's context length", "prompt", text, "tokens", tokenizer.ContextLength)
	}
	return ids
}

// EncodePrompts returns one L2-normalized text embedding per prompt. It
// implements labels.PromptEncoder. ctx is checked between batches: a label
// set of thousands of prompts takes minutes on a CPU, and a daemon asked
// to stop must not wait for it.
func (m *Model) EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error) {
	if err := m.probeText(); err != nil {
		return nil, err
	}
	out := make([][]float32, 0, len(prompts))
	for start := 0; start < len(prompts); start += textBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(start+textBatch, len(prompts))
		tokens := make([][]int32, 0, end-start)
		for _, p := range prompts[start:end] {
			tokens = append(tokens, m.Tokenize(p))
		}
		embs, err := m.Encoder.EncodeTexts(tokens)
		if err != nil {
			return nil, err
		}
		for _, e := range embs {
			out = append(out, engine.Normalize(e))
		}
	}
	return out, nil
}

// EncodeImages returns one L2-normalized embedding per preprocessed image
// (n images packed as NCHW float32).
func (m *Model) EncodeImages(pixels []float32, n int) ([][]float32, error) {
	if n == 0 {
		return nil, nil
	}
	embs, err := m.Encoder.EncodeImages(pixels, n)
	if err != nil {
		return nil, err
	}
	for i := range embs {
		embs[i] = engine.Normalize(embs[i])
	}
	return embs, nil
}

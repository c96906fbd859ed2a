package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/safefile"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/tokenizer"
)

// modelFlags are the flags of every command that loads a model.
type modelFlags struct {
	dir, backend, ortLib string
	threads              int
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.dir, "model", "", "model bundle directory")
	fs.StringVar(&m.backend, "backend", engine.BackendAuto, "auto, tensorrt or onnxruntime")
	fs.StringVar(&m.ortLib, "onnxruntime-lib", "", "path of libonnxruntime.so.1 (default $CLIPD_ONNXRUNTIME_LIB, then build/onnxruntime)")
	fs.IntVar(&m.threads, "threads", 0, "ONNX Runtime threads per inference (0: one per core)")
}

func (m *modelFlags) open(stderr io.Writer) (*model.Model, error) {
	if m.dir == "" {
		return nil, errors.New("--model DIR is required")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return model.Open(m.dir, model.Options{Backend: m.backend, ONNXRuntimeLib: m.ortLib, Threads: m.threads, Log: log, TextOnDemand: true})
}

func cmdTokenize(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", "(--vocab FILE | --model DIR) < strings.jsonl", stderr)
	vocab := fs.String("vocab", "", "BPE vocabulary (bpe_simple_vocab_16e6.txt.gz)")
	dir := fs.String("model", "", "model bundle whose tokenizer to use")
	length := fs.Int("context", tokenizer.ContextLength, "context length")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	var tok *tokenizer.Tokenizer
	var err error
	switch {
	case *vocab != "" && *dir != "":
		return errors.New("give --vocab or --model, not both")
	case *vocab != "":
		tok, err = tokenizer.LoadBPE(*vocab)
	case *dir != "":
		var b *bundle.Bundle
		if b, err = bundle.Load(*dir); err == nil {
			tok, err = tokenizer.LoadDir(b.TokenizerDir)
		}
	default:
		return errors.New("--vocab FILE or --model DIR is required")
	}
	if err != nil {
		return err
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(stdout)
	defer out.Flush() // the lines done before an error still go out
	line := 0
	for in.Scan() {
		line++
		var text string
		if err := json.Unmarshal(in.Bytes(), &text); err != nil {
			return fmt.Errorf("stdin:%d: want one JSON string per line: %v", line, err)
		}
		ids, truncated := tok.Tokenize(text, *length)
		if truncated {
			fmt.Fprintf(stderr, "clipd: stdin:%d: text truncated to %d tokens\n", line, *length)
		}
		if err := writeJSONLine(out, ids); err != nil {
			return err
		}
	}
	if err := in.Err(); err != nil {
		return err
	}
	// A full disk or a closed pipe shows here, not in Write.
	return out.Flush()
}

func cmdPreprocess(_ context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := newFlagSet("preprocess", "(--size N | --model DIR) [--box X1,Y1,X2,Y2] IMAGE --out FILE", stderr)
	size := fs.Int("size", 224, "output side in pixels (CLIP mean/std)")
	dir := fs.String("model", "", "take size, mean and std from this bundle")
	outPath := fs.String("out", "", "output file: float32 little-endian, CHW")
	var box boxFlag
	fs.Var(&box, "box", "preprocess this crop of the image (pixels, as Pillow's img.crop)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *outPath == "" {
		fs.Usage()
		return errUsage
	}
	cfg := preprocess.DefaultConfig()
	cfg.Size = *size
	if *dir != "" {
		b, err := bundle.Load(*dir)
		if err != nil {
			return err
		}
		cfg = preprocess.Config{Size: b.ImageSize(), Mean: b.Preprocess.Mean, Std: b.Preprocess.Std}
	}
	if cfg.Size <= 0 {
		return fmt.Errorf("--size must be positive, got %d", cfg.Size)
	}
	p := preprocess.New(cfg)
	defer p.Close()
	tensor := make([]float32, p.TensorLen())
	if err := box.file(p, pos[0], tensor); err != nil {
		return err
	}
	buf := make([]byte, 4*len(tensor))
	for i, v := range tensor {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	return safefile.WriteAtomic(*outPath, buf, time.Time{})
}

// orderedInputs records --image and --text flags in command-line order.
type orderedInputs struct{ items []embedInput }

type embedInput struct{ image, text string }

type inputFlag struct {
	to    *orderedInputs
	image bool
}

func (f inputFlag) String() string { return "" }
func (f inputFlag) Set(v string) error {
	if f.image {
		f.to.items = append(f.to.items, embedInput{image: v})
	} else {
		f.to.items = append(f.to.items, embedInput{text: v})
	}
	return nil
}

func cmdEmbed(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("embed", "--model DIR [--image PATH]... [--text STRING]...", stderr)
	var mf modelFlags
	mf.register(fs)
	var cf cacheFlags
	cf.register(fs)
	var inputs orderedInputs
	fs.Var(inputFlag{&inputs, true}, "image", "an image file (repeatable)")
	fs.Var(inputFlag{&inputs, false}, "text", "a text (repeatable)")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (images go after --image)", pos[0])
	}
	if len(inputs.items) == 0 {
		return errors.New("nothing to embed: give --image PATH or --text STRING")
	}
	m, err := mf.open(stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	var texts []string
	for _, in := range inputs.items {
		if in.image == "" {
			texts = append(texts, in.text)
		}
	}
	textEmbs, err := embedTexts(ctx, m, cf.open(m, stderr), texts, stderr)
	if err != nil {
		return err
	}
	pre := m.NewPreprocessor()
	defer pre.Close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	tensor := make([]float32, pre.TensorLen())
	for _, in := range inputs.items {
		var emb [][]float32
		var line any
		if in.image != "" {
			if err := pre.File(in.image, tensor); err != nil {
				return err
			}
			if emb, err = m.EncodeImages(tensor, 1); err != nil {
				return fmt.Errorf("%s: %w", in.image, err)
			}
			line = struct {
				Image     string    `json:"image"`
				Embedding []float32 `json:"embedding"`
			}{in.image, emb[0]}
		} else {
			line = struct {
				Text      string    `json:"text"`
				Embedding []float32 `json:"embedding"`
			}{in.text, textEmbs[0]}
			textEmbs = textEmbs[1:]
		}
		if err := writeJSONLine(out, line); err != nil {
			return err
		}
	}
	return out.Flush()
}

func cmdClassify(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("classify", "--model DIR --labels FILE [--top-k K] [--box X1,Y1,X2,Y2] IMAGE...", stderr)
	var mf modelFlags
	mf.register(fs)
	var cf cacheFlags
	cf.register(fs)
	labelsPath := fs.String("labels", "", "labels file (one label per line; see docs/labels.md)")
	topK := fs.Int("top-k", 5, "labels to print per image; 0 prints all")
	var box boxFlag
	fs.Var(&box, "box", "classify this crop of each image (pixels, as Pillow's img.crop)")
	images, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *labelsPath == "" || len(images) == 0 {
		fs.Usage()
		return errUsage
	}
	if *topK < 0 {
		return fmt.Errorf("--top-k must be 0 or more, got %d", *topK)
	}
	set, err := labels.Load(*labelsPath)
	if err != nil {
		return err
	}
	m, err := mf.open(stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := cf.embedder(m, stderr).Embed(ctx, set); err != nil {
		return err
	}
	pre := m.NewPreprocessor()
	defer pre.Close()
	tensor := make([]float32, pre.TensorLen())
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	for _, path := range images {
		if err := box.file(pre, path, tensor); err != nil {
			return err
		}
		emb, err := m.EncodeImages(tensor, 1)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		top, err := set.Top(emb[0], *topK)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		line := struct {
			Image string         `json:"image"`
			Box   *[4]int        `json:"box,omitempty"`
			Top   []engine.Match `json:"top"`
		}{path, box.json(), top}
		if err := writeJSONLine(out, line); err != nil {
			return err
		}
	}
	return out.Flush()
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

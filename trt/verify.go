package trt

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/tokenizer"
)

// ImageProbe is a deterministic, already-normalized image for the guard.
type ImageProbe struct {
	Name   string
	Pixels []float32 // 3*S*S, CHW
}

// ImageProbes returns images of side size that exercise different ranges:
// smooth gradients, hard edges, noise, and values near the extremes that
// CLIP's normalization produces (about -1.8 to 2.2), where FP16 error in
// the patch embedding is largest.
func ImageProbes(size int) []ImageProbe {
	n := size * size
	mk := func(name string, f func(c, y, x int) float32) ImageProbe {
		p := ImageProbe{Name: name, Pixels: make([]float32, 3*n)}
		for c := range 3 {
			for y := range size {
				for x := range size {
					p.Pixels[c*n+y*size+x] = f(c, y, x)
				}
			}
		}
		return p
	}
	s := float32(size - 1)
	rng := uint32(2463534242)
	return []ImageProbe{
		mk("gradient", func(c, y, x int) float32 {
			return -1.8 + 4*(float32(x)/s*float32(c+1)/3+float32(y)/s*float32(3-c)/3)/2
		}),
		mk("checkerboard", func(c, y, x int) float32 {
			if (x/8+y/8)%2 == 0 {
				return 2.1 - 0.1*float32(c)
			}
			return -1.7 + 0.1*float32(c)
		}),
		mk("noise", func(c, y, x int) float32 {
			rng ^= rng << 13
			rng ^= rng >> 17
			rng ^= rng << 5
			return float32(rng%4000)/1000 - 1.8
		}),
		mk("rings", func(c, y, x int) float32 {
			dx, dy := float64(x)-float64(s)/2, float64(y)-float64(s)/2
			return float32(2 * math.Sin(math.Sqrt(dx*dx+dy*dy)/3+float64(c)))
		}),
	}
}

// TextProbe is one tokenized prompt for the guard.
type TextProbe struct {
	Name   string
	Tokens []int32
}

// probePrompts cover a short prompt, a typical template, a long sentence
// and one cut at the context length, whose EOT sits in the last slot and
// so tests the end-of-text pooling at its edge.
var probePrompts = []string{
	"a photo of a cat.",
	"a blurry photo of a person riding a bicycle at night.",
	"an empty parking lot covered in snow, seen from a security camera mounted high on a wall",
	strings.Repeat("a delivery van stops at the gate and a driver carries parcels to the door ", 8),
}

// TextProbes tokenizes the probe prompts.
func TextProbes(tok *tokenizer.Tokenizer) []TextProbe {
	out := make([]TextProbe, len(probePrompts))
	for i, p := range probePrompts {
		ids, _ := tok.Tokenize(p, tokenizer.ContextLength)
		name := p
		if len(name) > 40 {
			name = name[:40] + "…"
		}
		out[i] = TextProbe{Name: name, Tokens: ids}
	}
	return out
}

func probeTokens(b *bundle.Bundle) ([]TextProbe, error) {
	tok, err := tokenizer.LoadDir(b.TokenizerDir)
	if err != nil {
		return nil, fmt.Errorf("trt: tokenizer for the accuracy probes: %w", err)
	}
	return TextProbes(tok), nil
}

// Compare runs the probes through candidate and reference and decides per
// encoder. An error of the candidate refuses that encoder; an error of the
// reference is returned, since then nothing can be judged.
func Compare(candidate, reference engine.Encoder, texts []TextProbe, minCosine float64) (visual, textual Verdict, err error) {
	images := ImageProbes(candidate.ImageSize())
	pixels := make([]float32, 0, len(images)*len(images[0].Pixels))
	for _, p := range images {
		pixels = append(pixels, p.Pixels...)
	}
	want, err := reference.EncodeImages(pixels, len(images))
	if err != nil {
		return visual, textual, fmt.Errorf("trt: FP32 reference, image probes: %w", err)
	}
	got, cerr := candidate.EncodeImages(pixels, len(images))
	visual = judge(Visual, names(images, func(p ImageProbe) string { return p.Name }), got, want, cerr, minCosine)

	tokens := make([][]int32, len(texts))
	for i, t := range texts {
		tokens[i] = t.Tokens
	}
	want, err = reference.EncodeTexts(tokens)
	if err != nil {
		return visual, textual, fmt.Errorf("trt: FP32 reference, text probes: %w", err)
	}
	got, cerr = candidate.EncodeTexts(tokens)
	textual = judge(Textual, names(texts, func(p TextProbe) string { return p.Name }), got, want, cerr, minCosine)
	return visual, textual, nil
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

func judge(encoder string, probeNames []string, got, want [][]float32, candidateErr error, minCosine float64) Verdict {
	if candidateErr != nil {
		return Verdict{Encoder: encoder, WorstCosine: math.NaN(),
			Reason: fmt.Sprintf("%s encoder: running the probes failed: %v", encoder, candidateErr)}
	}
	if len(got) != len(want) {
		return Verdict{Encoder: encoder, WorstCosine: math.NaN(),
			Reason: fmt.Sprintf("%s encoder: %d embeddings for %d probes", encoder, len(got), len(want))}
	}
	probes := make([]Probe, len(want))
	for i := range want {
		probes[i] = Probe{Name: probeNames[i], Got: got[i], Want: want[i]}
	}
	return Decide(encoder, probes, minCosine)
}

// Timing is the speed of one encoder at one batch size.
type Timing struct {
	Encoder string
	Batch   int
	// Latency is the mean wall time of one call.
	Latency time.Duration
	// PerSecond is items (images or texts) per second.
	PerSecond float64
}

// Measure times enc's encoders at batch 1 and at optBatch (skipped when 1),
// iterations calls each after two warm-up calls, cycling through the probe
// images and texts to fill a batch.
func Measure(enc engine.Encoder, texts []TextProbe, optBatch, iterations int) ([]Timing, error) {
	if iterations < 1 {
		return nil, errors.New("trt: Measure needs at least one iteration")
	}
	if len(texts) == 0 {
		return nil, errors.New("trt: Measure needs text probes")
	}
	images := ImageProbes(enc.ImageSize())
	item := len(images[0].Pixels)
	batches := []int{1}
	if optBatch > 1 {
		batches = append(batches, optBatch)
	}
	var out []Timing
	for _, n := range batches {
		pixels := make([]float32, 0, n*item)
		tokens := make([][]int32, n)
		for i := range n {
			pixels = append(pixels, images[i%len(images)].Pixels...)
			tokens[i] = texts[i%len(texts)].Tokens
		}
		for _, tw := range []struct {
			name string
			call func() error
		}{
			{Visual, func() error { _, err := enc.EncodeImages(pixels, n); return err }},
			{Textual, func() error { _, err := enc.EncodeTexts(tokens); return err }},
		} {
			d, err := meanCall(iterations, tw.call)
			if err != nil {
				return nil, fmt.Errorf("trt: timing the %s encoder at batch %d: %w", tw.name, n, err)
			}
			out = append(out, Timing{Encoder: tw.name, Batch: n, Latency: d, PerSecond: float64(n) / d.Seconds()})
		}
	}
	return out, nil
}

func meanCall(iterations int, call func() error) (time.Duration, error) {
	for range 2 {
		if err := call(); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	for range iterations {
		if err := call(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(iterations), nil
}

// Report is what `clipd verify --backend tensorrt` prints.
type Report struct {
	Versions VersionInfo
	Device   Device
	Backend  string
	Verdicts []Verdict
	Timings  []Timing
}

// Verify opens the bundle on TensorRT (building engines if needed), which
// runs the accuracy guard, and times both encoders at batch 1 and at the
// profile's optimal batch.
func Verify(b *bundle.Bundle, opts Options, iterations int) (Report, error) {
	var r Report
	var err error
	if r.Versions, err = Versions(); err != nil {
		return r, err
	}
	if r.Device, err = DeviceInfo(); err != nil {
		return r, err
	}
	texts, err := probeTokens(b)
	if err != nil {
		return r, err
	}
	enc, err := Open(b, opts)
	if err != nil {
		return r, err
	}
	defer enc.Close()
	r.Backend = enc.Backend()
	vis, txt := enc.Verdicts()
	r.Verdicts = []Verdict{vis, txt}
	opt := enc.visual.optBatch()
	if r.Timings, err = Measure(enc, texts, opt, iterations); err != nil {
		return r, err
	}
	return r, nil
}

// optBatch is the engine's optimal batch, or 1 for a fallen-back tower.
func (t *tower) optBatch() int {
	if t.engine == nil {
		return 1
	}
	return max(1, t.engine.Input().OptBatch)
}

// WriteText prints the report for people. The version line is left out
// when no TensorRT was involved (timings of another backend).
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if r.Versions != (VersionInfo{}) {
		fmt.Fprintf(&b, "TensorRT %s (headers %s), ONNX parser %s, CUDA runtime %s, driver %s\n",
			r.Versions.TensorRTLinked, r.Versions.TensorRT, r.Versions.Parser, r.Versions.CUDARuntime, r.Versions.CUDADriver)
	}
	if r.Device.Name != "" {
		fmt.Fprintf(&b, "GPU %s, compute %s, %d SMs, integrated %v\n",
			r.Device.Name, r.Device.ComputeCapability(), r.Device.SMs, r.Device.Integrated)
	}
	if r.Backend != "" {
		fmt.Fprintf(&b, "backend: %s\n", r.Backend)
	}
	for _, v := range r.Verdicts {
		status := "accepted"
		if !v.Accept {
			status = "REFUSED: " + v.Reason
		}
		fmt.Fprintf(&b, "%-8s %s; worst probe %q cosine %.6f; all %s\n", v.Encoder, status, v.Worst, v.WorstCosine, formatCosines(v.Cosines))
	}
	for _, t := range r.Timings {
		fmt.Fprintf(&b, "%-8s batch %-3d %9.2f ms/call %10.1f items/s\n",
			t.Encoder, t.Batch, float64(t.Latency.Microseconds())/1000, t.PerSecond)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatCosines(c []float64) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = fmt.Sprintf("%.6f", v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

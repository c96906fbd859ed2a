package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/synth"
)

// Label sets of the evaluation. The pair prompts are synth.EvalTemplates;
// colour and shape prompts are worded apart from any training caption too.
var (
	colorTemplates = []string{"a photo of one {} shape.", "one {} shape in the image."}
	shapeTemplates = synth.EvalTemplates
)

// evalConfig says which scenes are scored.
type evalConfig struct {
	Model string
	N     int
	Seed  uint64
	// Size is the rendered side in pixels; 0 means the model's input size,
	// larger sizes exercise the bicubic downscale a camera frame goes
	// through.
	Size    int
	Threads int
}

// Report is the evaluation's result, printed as JSON.
type Report struct {
	Model    string  `json:"model"`
	Scenes   int     `json:"scenes"`
	Seed     uint64  `json:"seed"`
	Size     int     `json:"render_size"`
	Pair48   float64 `json:"pair48_top1"`
	Color8   float64 `json:"color8_top1"`
	Shape6   float64 `json:"shape6_top1"`
	Color48  float64 `json:"color_of_pair48_top1"`
	Shape48  float64 `json:"shape_of_pair48_top1"`
	HeldOut  float64 `json:"heldout_pair48_top1"`
	HeldOutN int     `json:"heldout_scenes"`
	// PerPair is the 48-way top-1 of each pair over all scenes scored.
	PerPair map[string]float64 `json:"per_pair"`
}

// tally accumulates predictions against the truth; kept apart from the
// model so the scoring can be tested on its own.
type tally struct {
	n, pair, color, shape, color48, shape48 int
	heldN, held                             int
	perPairN, perPairOK                     map[string]int
}

func newTally() *tally {
	return &tally{perPairN: map[string]int{}, perPairOK: map[string]int{}}
}

// addMain scores a scene of the main set: pair, colour and shape label
// predictions against the single shape s.
func (t *tally) addMain(s synth.Shape, pair, color, shape string) {
	want := synth.Pair{Color: s.Color, Kind: s.Kind}.String()
	t.n++
	t.perPairN[want]++
	if pair == want {
		t.pair++
		t.perPairOK[want]++
	}
	pc, pk, _ := strings.Cut(pair, " ")
	if pc == s.Color {
		t.color48++
	}
	if pk == s.Kind {
		t.shape48++
	}
	if color == s.Color {
		t.color++
	}
	if shape == s.Kind {
		t.shape++
	}
}

// addHeldOut scores a scene of the held-out set (48-way among all pairs).
func (t *tally) addHeldOut(s synth.Shape, pair string) {
	want := synth.Pair{Color: s.Color, Kind: s.Kind}.String()
	t.heldN++
	t.perPairN[want]++
	if pair == want {
		t.held++
		t.perPairOK[want]++
	}
}

func (t *tally) report(r *Report) {
	frac := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	r.Scenes = t.n
	r.Pair48, r.Color8, r.Shape6 = frac(t.pair, t.n), frac(t.color, t.n), frac(t.shape, t.n)
	r.Color48, r.Shape48 = frac(t.color48, t.n), frac(t.shape48, t.n)
	r.HeldOut, r.HeldOutN = frac(t.held, t.heldN), t.heldN
	r.PerPair = map[string]float64{}
	for p, n := range t.perPairN {
		r.PerPair[p] = frac(t.perPairOK[p], n)
	}
}

func runEval(args []string) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	var c evalConfig
	var jsonOut string
	fs.StringVar(&c.Model, "model", "", "model bundle directory")
	fs.IntVar(&c.N, "n", 2000, "single-shape scenes over all pairs (plus n/4 held-out-pair scenes)")
	fs.Uint64Var(&c.Seed, "seed", 1_000_000_000, "first seed; training used 0..59999, progress checks 900000000..")
	fs.IntVar(&c.Size, "size", 0, "render size (0: the model's input size)")
	fs.IntVar(&c.Threads, "threads", 0, "ONNX Runtime threads (0: one per CPU)")
	fs.StringVar(&jsonOut, "json", "", "also write the report to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Model == "" || c.N <= 0 {
		return fmt.Errorf("eval: need --model and --n > 0")
	}
	rep, err := evaluate(c, os.Stderr)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
	if jsonOut != "" {
		return os.WriteFile(jsonOut, append(out, '\n'), 0o644)
	}
	return nil
}

// evaluate renders fresh single-shape scenes and scores the model's
// zero-shot predictions on them.
func evaluate(c evalConfig, progress io.Writer) (*Report, error) {
	m, err := model.Open(c.Model, model.Options{Backend: engine.BackendONNXRuntime, Threads: c.Threads})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	b, enc := m.Bundle, m.Encoder
	embedder := labels.NewEmbedder(m)
	var pairLabels []string
	for _, p := range synth.AllPairs() {
		pairLabels = append(pairLabels, p.String())
	}
	scale := m.LogitScale()
	pairs, err := classifier(embedder, pairLabels, synth.EvalTemplates, scale)
	if err != nil {
		return nil, err
	}
	colors, err := classifier(embedder, synth.ColorNames, colorTemplates, scale)
	if err != nil {
		return nil, err
	}
	shapes, err := classifier(embedder, synth.ShapeKinds, shapeTemplates, scale)
	if err != nil {
		return nil, err
	}

	size := c.Size
	if size <= 0 {
		size = b.ImageSize()
	}
	pp := preprocess.New(preprocess.Config{Size: b.ImageSize(), Mean: b.Preprocess.Mean, Std: b.Preprocess.Std})
	defer pp.Close()

	t := newTally()
	type set struct {
		opt  synth.Options
		n    int
		seed uint64
		held bool
	}
	sets := []set{
		{synth.Options{Width: size, Height: size, MaxShapes: 1}, c.N, c.Seed, false},
		{synth.Options{Width: size, Height: size, MaxShapes: 1, Only: synth.HeldOut}, max(c.N/4, 1), c.Seed + uint64(c.N), true},
	}
	const batch = 32
	tensorLen := pp.TensorLen()
	pixels := make([]float32, batch*tensorLen)
	rgb := make([]byte, size*size*3)
	truths := make([]synth.Shape, batch)
	for _, st := range sets {
		for start := 0; start < st.n; start += batch {
			k := min(batch, st.n-start)
			for i := 0; i < k; i++ {
				truth := synth.RenderInto(rgb, st.seed+uint64(start+i), st.opt)
				truths[i] = truth.Shapes[0]
				if err := pp.RGB(rgb, size, size, size*3, pixels[i*tensorLen:(i+1)*tensorLen]); err != nil {
					return nil, err
				}
			}
			embs, err := enc.EncodeImages(pixels[:k*tensorLen], k)
			if err != nil {
				return nil, err
			}
			for i, e := range embs {
				pair, err := top1(pairs, e)
				if err != nil {
					return nil, err
				}
				if st.held {
					t.addHeldOut(truths[i], pair)
					continue
				}
				color, err := top1(colors, e)
				if err != nil {
					return nil, err
				}
				shape, err := top1(shapes, e)
				if err != nil {
					return nil, err
				}
				t.addMain(truths[i], pair, color, shape)
			}
			if progress != nil {
				fmt.Fprintf(progress, "\rclipd-synth eval: %d/%d", start+k, st.n)
			}
		}
		if progress != nil {
			fmt.Fprintln(progress)
		}
	}
	rep := &Report{Model: c.Model, Seed: c.Seed, Size: size}
	t.report(rep)
	return rep, nil
}

// classifier ensembles every label over every template, through the same
// path as clipd's label files (CLIP's zero-shot method).
func classifier(embedder *labels.Embedder, names, templates []string, scale float32) (*engine.Classifier, error) {
	set, err := labels.FromNames(names, templates)
	if err != nil {
		return nil, err
	}
	if err := embedder.Embed(context.Background(), set); err != nil {
		return nil, err
	}
	return set.Classifier(), nil
}

func top1(c *engine.Classifier, emb []float32) (string, error) {
	logits, err := c.Logits(emb)
	if err != nil {
		return "", err
	}
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return c.Labels[best], nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/synth"
)

// cmdVerify compares a backend with the FP32 ONNX Runtime path on probe
// inputs (rendered scenes and prompts) and reports speed.
func cmdVerify(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "--model DIR [--backend tensorrt] [--batch N]", stderr)
	var mf modelFlags
	mf.register(fs)
	batch := fs.Int("batch", 8, "the larger batch size to time (TensorRT: the profile's opt)")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		fs.Usage()
		return errUsage
	}
	test, err := mf.open(stderr)
	if err != nil {
		return err
	}
	defer test.Close()
	ref := test
	if test.Encoder.Backend() != model.BackendONNXRuntime {
		refFlags := mf
		refFlags.backend = model.BackendONNXRuntime
		if ref, err = refFlags.open(stderr); err != nil {
			return err
		}
		defer ref.Close()
	}

	pre := test.NewPreprocessor()
	defer pre.Close()
	size := pre.Config().Size
	n := max(*batch, 1)
	pixels := make([]float32, n*pre.TensorLen())
	for i := range n {
		rgb, _ := synth.Render(uint64(1_000_000+i), synth.Options{Width: 2 * size, Height: 2 * size})
		if err := pre.RGB(rgb, 2*size, 2*size, 0, pixels[i*pre.TensorLen():(i+1)*pre.TensorLen()]); err != nil {
			return err
		}
	}
	prompts := []string{"a photo of a red circle.", "a photo of a dog.", "two blue squares on a noisy background.", "a small green star at the top left."}

	fmt.Fprintf(stdout, "backend %s vs %s (reference), model %s\n", test.Encoder.Backend(), ref.Encoder.Backend(), test.Bundle.Dir)
	gotImg, err := test.EncodeImages(pixels, n)
	if err != nil {
		return err
	}
	wantImg, err := ref.EncodeImages(pixels, n)
	if err != nil {
		return err
	}
	gotTxt, err := test.EncodePrompts(prompts)
	if err != nil {
		return err
	}
	wantTxt, err := ref.EncodePrompts(prompts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image encoder: worst cosine %.6f over %d probes\n", worstCosine(gotImg, wantImg), n)
	fmt.Fprintf(stdout, "text encoder:  worst cosine %.6f over %d probes\n", worstCosine(gotTxt, wantTxt), len(prompts))

	for _, b := range []int{1, n} {
		per, err := timeIt(func() error { _, err := test.EncodeImages(pixels[:b*pre.TensorLen()], b); return err })
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "image batch %-3d %8.2f ms/call %8.1f images/s\n", b, ms(per), float64(b)/per.Seconds())
	}
	for _, b := range []int{1, len(prompts)} {
		per, err := timeIt(func() error { _, err := test.EncodePrompts(prompts[:b]); return err })
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "text batch %-4d %8.2f ms/call %8.1f texts/s\n", b, ms(per), float64(b)/per.Seconds())
	}
	return nil
}

// timeIt runs f for about a second (at least 3 times) after one warm-up.
func timeIt(f func() error) (time.Duration, error) {
	if err := f(); err != nil {
		return 0, err
	}
	start := time.Now()
	runs := 0
	for runs < 3 || time.Since(start) < time.Second {
		if err := f(); err != nil {
			return 0, err
		}
		runs++
	}
	return time.Since(start) / time.Duration(runs), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func worstCosine(a, b [][]float32) float64 {
	worst := 1.0
	for i := range a {
		var dot, na, nb float64
		for j := range a[i] {
			dot += float64(a[i][j]) * float64(b[i][j])
			na += float64(a[i][j]) * float64(a[i][j])
			nb += float64(b[i][j]) * float64(b[i][j])
		}
		worst = math.Min(worst, dot/math.Sqrt(na*nb))
	}
	return worst
}

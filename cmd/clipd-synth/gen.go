package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/synth"
)

// genConfig is what one dataset is made from; it is also written next to the
// data as dataset.json so a dataset documents its own making.
type genConfig struct {
	Out      string       `json:"-"`
	N        int          `json:"n"`
	Seed     uint64       `json:"seed"`
	Size     int          `json:"size"`
	Jobs     int          `json:"-"`
	JPEGFrac float64      `json:"jpeg_fraction"`
	Eval     bool         `json:"eval"`
	HeldOut  []synth.Pair `json:"held_out"`
}

// record is one line of captions.jsonl.
type record struct {
	Image    string      `json:"image"`
	Captions []string    `json:"captions"`
	Truth    synth.Truth `json:"truth"`
}

func runGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	var c genConfig
	fs.StringVar(&c.Out, "out", "", "output directory (created)")
	fs.IntVar(&c.N, "n", 1000, "number of scenes")
	fs.Uint64Var(&c.Seed, "seed", 0, "first scene seed; scene i uses seed+i")
	fs.IntVar(&c.Size, "size", 64, "image side in pixels")
	fs.IntVar(&c.Jobs, "jobs", runtime.GOMAXPROCS(0), "parallel workers")
	fs.Float64Var(&c.JPEGFrac, "jpeg", 0.2, "fraction of images passed through a JPEG round trip (artefacts)")
	fs.BoolVar(&c.Eval, "eval", false, "evaluation scenes: one shape each, any pair (held-out ones included)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Out == "" || c.N <= 0 || c.Size < 16 || c.Jobs <= 0 || c.JPEGFrac < 0 || c.JPEGFrac > 1 {
		return fmt.Errorf("gen: need --out, --n > 0, --size ≥ 16, --jobs > 0 and 0 ≤ --jpeg ≤ 1")
	}
	c.HeldOut = synth.HeldOut
	start := time.Now()
	err := generate(c, func(done int) {
		fmt.Fprintf(os.Stderr, "\rclipd-synth gen: %d/%d scenes (%.0f/s)", done, c.N, float64(done)/time.Since(start).Seconds())
	})
	fmt.Fprintln(os.Stderr)
	return err
}

// trainingOptions are the scenes the demo model learns from: the held-out
// pairs never appear, and half the scenes have a single shape so that
// single-object zero-shot prompts match what was seen.
func trainingOptions(size int, seed uint64) synth.Options {
	opt := synth.Options{Width: size, Height: size, Exclude: synth.HeldOut}
	if seed%2 == 0 {
		opt.MaxShapes = 1
	}
	return opt
}

// evalOptions are the scenes zero-shot accuracy is measured on: one shape,
// any of the 48 pairs, held-out ones included.
func evalOptions(size int) synth.Options {
	return synth.Options{Width: size, Height: size, MaxShapes: 1}
}

// generate renders scenes in parallel and writes them in seed order.
func generate(c genConfig, progress func(done int)) error {
	imgDir := filepath.Join(c.Out, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	records := make([]record, c.N)
	var next, done atomic.Int64
	errs := make([]error, c.Jobs)
	var wg sync.WaitGroup
	for w := 0; w < c.Jobs; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var buf bytes.Buffer
			for {
				i := int(next.Add(1) - 1)
				if i >= c.N {
					return
				}
				seed := c.Seed + uint64(i)
				rec, err := writeScene(c, imgDir, i, seed, &buf)
				if err != nil {
					errs[w] = err
					return
				}
				records[i] = rec
				if d := done.Add(1); d%500 == 0 || int(d) == c.N {
					progress(int(d))
				}
			}
		}(w)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return writeIndex(c, records)
}

func writeScene(c genConfig, imgDir string, i int, seed uint64, buf *bytes.Buffer) (record, error) {
	opt := trainingOptions(c.Size, seed)
	if c.Eval {
		opt = evalOptions(c.Size)
	}
	rgb, truth := synth.Render(seed, opt)
	img := &image.NRGBA{Pix: make([]byte, c.Size*c.Size*4), Stride: c.Size * 4, Rect: image.Rect(0, 0, c.Size, c.Size)}
	for p := 0; p < c.Size*c.Size; p++ {
		copy(img.Pix[p*4:p*4+3], rgb[p*3:p*3+3])
		img.Pix[p*4+3] = 255
	}
	var out image.Image = img
	// The fraction test uses the seed's own hash, not a shared RNG, so the
	// dataset does not depend on worker scheduling.
	if h := mix(seed); float64(h%1000)/1000 < c.JPEGFrac {
		buf.Reset()
		if err := jpeg.Encode(buf, img, &jpeg.Options{Quality: 55 + int(h>>20)%40}); err != nil {
			return record{}, err
		}
		dec, err := jpeg.Decode(buf)
		if err != nil {
			return record{}, err
		}
		out = dec
	}
	name := fmt.Sprintf("%07d.png", i)
	buf.Reset()
	if err := png.Encode(buf, out); err != nil {
		return record{}, err
	}
	if err := os.WriteFile(filepath.Join(imgDir, name), buf.Bytes(), 0o644); err != nil {
		return record{}, err
	}
	return record{Image: "images/" + name, Captions: synth.Captions(truth, seed), Truth: truth}, nil
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ (x >> 33)
}

func writeIndex(c genConfig, records []record) error {
	f, err := os.Create(filepath.Join(c.Out, "captions.jsonl"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range records {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	meta, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Out, "dataset.json"), append(meta, '\n'), 0o644)
}

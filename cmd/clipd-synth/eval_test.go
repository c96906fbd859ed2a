package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/clipd/clipd/synth"
)

func TestTallyScoresAgainstTruth(t *testing.T) {
	tl := newTally()
	red := synth.Shape{Color: "red", Kind: "circle"}
	tl.addMain(red, "red circle", "red", "circle")  // all right
	tl.addMain(red, "red square", "red", "square")  // colour right
	tl.addMain(red, "blue circle", "blue", "cross") // shape right in the 48-way only
	tl.addMain(red, "blue star", "blue", "star")    // all wrong
	tl.addHeldOut(synth.Shape{Color: "red", Kind: "star"}, "red star")
	tl.addHeldOut(synth.Shape{Color: "red", Kind: "star"}, "red cross")
	var r Report
	tl.report(&r)
	for name, got := range map[string][2]float64{
		"pair48": {r.Pair48, 0.25}, "color8": {r.Color8, 0.5}, "shape6": {r.Shape6, 0.25},
		"color48": {r.Color48, 0.5}, "shape48": {r.Shape48, 0.5}, "heldout": {r.HeldOut, 0.5},
		"per red circle": {r.PerPair["red circle"], 0.25}, "per red star": {r.PerPair["red star"], 0.5},
	} {
		if math.Abs(got[0]-got[1]) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
	if r.Scenes != 4 || r.HeldOutN != 2 {
		t.Errorf("counts %d/%d", r.Scenes, r.HeldOutN)
	}
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// demoModel returns the committed demo bundle, skipping when it or the ONNX
// Runtime library is missing.
func demoModel(t *testing.T) string {
	dir := filepath.Join(repoRoot(t), "models", "demo")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Skipf("no demo model at %s: %v", dir, err)
	}
	lib := os.Getenv("CLIPD_ONNXRUNTIME_LIB")
	if lib == "" {
		lib = filepath.Join(repoRoot(t), "build", "onnxruntime", "libonnxruntime.so.1")
		t.Setenv("CLIPD_ONNXRUNTIME_LIB", lib)
	}
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("ONNX Runtime library %s missing (make deps): %v", lib, err)
	}
	return dir
}

// The committed model must keep the accuracy its card reports, on scenes
// it never saw; thresholds sit a little under the card's figures to allow
// for the smaller sample.
func TestDemoModelAccuracy(t *testing.T) {
	dir := demoModel(t)
	rep, err := evaluate(evalConfig{Model: dir, N: 400, Seed: 2_000_000_000, Threads: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pair48 %.3f colour8 %.3f shape6 %.3f held-out %.3f (n=%d/%d)", rep.Pair48, rep.Color8, rep.Shape6, rep.HeldOut, rep.Scenes, rep.HeldOutN)
	for name, v := range map[string][2]float64{
		"pair48": {rep.Pair48, minPair48}, "color8": {rep.Color8, minColor8},
		"shape6": {rep.Shape6, minShape6}, "heldout": {rep.HeldOut, minHeldOut},
	} {
		if v[0] < v[1] {
			t.Errorf("%s top-1 %.3f below %.3f", name, v[0], v[1])
		}
	}
}

// Floors for TestDemoModelAccuracy, a little under models/demo/README.md
// (which are at or above the targets of the model's issue: 48-way ≥ 0.90,
// shape ≥ 0.95, colour ≥ 0.97; this sample: 0.998, 0.998, 1.000, 0.990).
const (
	minPair48  = 0.97 // card: 1.000 (chance 0.021)
	minColor8  = 0.98 // card: 1.000 (chance 0.125)
	minShape6  = 0.97 // card: 1.000 (chance 0.167)
	minHeldOut = 0.93 // card: 0.998 (chance 0.021)
)

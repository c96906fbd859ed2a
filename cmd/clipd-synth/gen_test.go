package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/synth"
)

func readRecords(t *testing.T, dir string) []record {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "captions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, r)
	}
	return out
}

func TestGenerateWritesAReproducibleDataset(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	for i, d := range dirs {
		// Different worker counts must not change the result.
		c := genConfig{Out: d, N: 40, Seed: 5, Size: 48, Jobs: 1 + 2*i, JPEGFrac: 0.3, HeldOut: synth.HeldOut}
		if err := generate(c, func(int) {}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := readRecords(t, dirs[0]), readRecords(t, dirs[1])
	if len(a) != 40 || len(b) != 40 {
		t.Fatalf("%d and %d records, want 40", len(a), len(b))
	}
	for i := range a {
		ja, _ := json.Marshal(a[i])
		jb, _ := json.Marshal(b[i])
		if !bytes.Equal(ja, jb) {
			t.Fatalf("record %d differs between runs:\n%s\n%s", i, ja, jb)
		}
		pa, err := os.ReadFile(filepath.Join(dirs[0], a[i].Image))
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := os.ReadFile(filepath.Join(dirs[1], b[i].Image))
		if !bytes.Equal(pa, pb) {
			t.Fatalf("image %s differs between runs", a[i].Image)
		}
		img, err := png.Decode(bytes.NewReader(pa))
		if err != nil || img.Bounds().Dx() != 48 || img.Bounds().Dy() != 48 {
			t.Fatalf("image %s: %v, bounds %v", a[i].Image, err, img.Bounds())
		}
		if len(a[i].Captions) < 3 || len(a[i].Truth.Shapes) == 0 {
			t.Fatalf("record %d: %+v", i, a[i])
		}
	}
	var meta genConfig
	raw, err := os.ReadFile(filepath.Join(dirs[0], "dataset.json"))
	if err != nil || json.Unmarshal(raw, &meta) != nil || meta.N != 40 || len(meta.HeldOut) != len(synth.HeldOut) {
		t.Fatalf("dataset.json: %v %s", err, raw)
	}
}

// The held-out pairs must be absent from training data entirely, while an
// evaluation set contains them.
func TestHeldOutPairsNeverInTrainingScenes(t *testing.T) {
	seen := map[synth.Pair]int{}
	for seed := uint64(0); seed < 3000; seed++ {
		_, truth := synth.Render(seed, trainingOptions(32, seed))
		for _, s := range truth.Shapes {
			seen[synth.Pair{Color: s.Color, Kind: s.Kind}]++
		}
	}
	for _, p := range synth.AllPairs() {
		held := false
		for _, h := range synth.HeldOut {
			held = held || h == p
		}
		if held && seen[p] > 0 {
			t.Errorf("held-out pair %s drawn %d times in training scenes", p, seen[p])
		}
		if !held && seen[p] == 0 {
			t.Errorf("training pair %s never drawn", p)
		}
	}
	_, truth := synth.Render(1, synth.Options{Width: 32, Height: 32, MaxShapes: 1, Only: synth.HeldOut})
	if len(truth.Shapes) != 1 {
		t.Fatalf("eval scene has %d shapes", len(truth.Shapes))
	}
}

func TestGenRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--n", "5"}, {"--out", t.TempDir(), "--size", "4"}, {"--out", t.TempDir(), "--jpeg", "2"}} {
		if err := runGen(args); err == nil {
			t.Errorf("gen %v: no error", args)
		}
	}
}

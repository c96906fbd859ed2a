package preprocess

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// sharedDir locates the read-only reference data (env CLIPD_SHARED, else
// ../shared next to the repository).
func sharedDir(t testing.TB) string {
	dir := os.Getenv("CLIPD_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "reference", "preprocess.json")); err != nil {
		t.Skipf("reference/preprocess.json missing (%v); set CLIPD_SHARED to the shared data directory", err)
	}
	return dir
}

type referenceSet struct {
	NPx   int        `json:"n_px"`
	Mean  [3]float32 `json:"mean"`
	Std   [3]float32 `json:"std"`
	Items []struct {
		Image  string `json:"image"`
		Tensor string `json:"tensor"`
		Shape  []int  `json:"shape"`
	} `json:"items"`
}

func loadReference(t testing.TB) (string, referenceSet) {
	dir := filepath.Join(sharedDir(t), "reference")
	data, err := os.ReadFile(filepath.Join(dir, "preprocess.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref referenceSet
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("preprocess.json: %v", err)
	}
	return dir, ref
}

func readFloats(t testing.TB, path string) []float32 {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[i*4:]))
	}
	return out
}

// TestReferenceTensors checks every reference item: the uint8 pixels
// recovered from the reference floats must equal ours exactly, and so must
// the float32 tensor.
func TestReferenceTensors(t *testing.T) {
	dir, ref := loadReference(t)
	cfg := Config{Size: ref.NPx, Mean: ref.Mean, Std: ref.Std}
	if cfg != DefaultConfig() {
		t.Errorf("reference config %+v differs from DefaultConfig %+v", cfg, DefaultConfig())
	}
	p := New(cfg)
	defer p.Close()
	n := ref.NPx * ref.NPx
	got := make([]uint8, 3*n)
	gotF := make([]float32, 3*n)
	levels := [3]map[float32]uint8{}
	for c := range levels {
		levels[c] = map[float32]uint8{}
		for v, f := range p.lut[c] {
			levels[c][f] = uint8(v)
		}
	}
	passed := 0
	for _, item := range ref.Items {
		want := readFloats(t, filepath.Join(dir, item.Tensor))
		if len(want) != 3*n {
			t.Fatalf("%s: %d floats, want %d", item.Tensor, len(want), 3*n)
		}
		path := filepath.Join(dir, item.Image)
		if err := p.FileUint8(path, got); err != nil {
			t.Errorf("%s: %v", item.Image, err)
			continue
		}
		if err := p.File(path, gotF); err != nil {
			t.Fatal(err)
		}
		bad, badF, unrecoverable := 0, 0, 0
		first := -1
		for i, f := range want {
			c := i / n
			v, exact := levels[c][f]
			if !exact {
				v = nearestLevel(&p.lut[c], f)
				unrecoverable++
			}
			if got[i] != v {
				if first < 0 {
					first = i
				}
				bad++
			}
			if gotF[i] != f {
				badF++
			}
		}
		if bad > 0 {
			c, y, x := first/n, first%n/ref.NPx, first%ref.NPx
			t.Errorf("%s: %d of %d uint8 values differ; first at channel %d y %d x %d: got %d, want %d",
				item.Image, bad, 3*n, c, y, x, got[first], nearestLevel(&p.lut[c], want[first]))
		}
		if badF > 0 {
			t.Errorf("%s: %d float32 values differ from the reference (%d reference values are not exactly one of our 256 levels)", item.Image, badF, unrecoverable)
		}
		if bad == 0 && badF == 0 {
			passed++
		}
	}
	t.Logf("%d of %d reference items bit-exact (uint8 and float32)", passed, len(ref.Items))
}

// nearestLevel recovers the uint8 level whose normalised value is closest
// to f.
func nearestLevel(lut *[256]float32, f float32) uint8 {
	best, bestD := 0, math.Inf(1)
	for v, l := range lut {
		if d := math.Abs(float64(l - f)); d < bestD {
			best, bestD = v, d
		}
	}
	return uint8(best)
}

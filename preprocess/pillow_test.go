package preprocess

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func pythonWithPillow(t *testing.T) string {
	python := os.Getenv("CLIPD_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	if err := exec.Command(python, "-c", "import PIL, numpy").Run(); err != nil {
		t.Skipf("Python with Pillow and numpy not available as %s (%v); set CLIPD_PYTHON", python, err)
	}
	return python
}

// writeGoPNGs writes the PNG variants Pillow's helper cannot easily make:
// 16-bit RGB and 16-bit RGBA.
func writeGoPNGs(t *testing.T, dir string) {
	rgb16 := image.NewRGBA64(image.Rect(0, 0, 333, 250))
	rgba16 := image.NewNRGBA64(image.Rect(0, 0, 260, 301))
	for y := 0; y < 301; y++ {
		for x := 0; x < 333; x++ {
			v := uint16(x*197 + y*331 + (x*y)%977*61)
			if x < 260 {
				rgba16.SetNRGBA64(x, y, color.NRGBA64{v, v * 3, 65535 - v, uint16(x * 252)})
			}
			if y < 250 {
				rgb16.SetRGBA64(x, y, color.RGBA64{v, v * 7, v ^ 0x5a5a, 65535})
			}
		}
	}
	for name, img := range map[string]image.Image{"go_rgb16_333x250.png": rgb16, "go_rgba16_260x301.png": rgba16} {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMatchesPillow runs the real Pillow 9.4 on images in every supported
// mode, odd sizes, upscales and extreme aspect ratios, and at two output
// sizes, and requires identical uint8 output.
func TestMatchesPillow(t *testing.T) {
	python := pythonWithPillow(t)
	for _, size := range []int{224, 97} {
		dir := t.TempDir()
		writeGoPNGs(t, dir)
		cmd := exec.Command(python, filepath.Join("testdata", "pillow_reference.py"), dir, strconv.Itoa(size))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pillow_reference.py: %v\n%s", err, out)
		}
		p := New(Config{Size: size})
		got := make([]uint8, 3*size*size)
		files, _ := filepath.Glob(filepath.Join(dir, "*.u8"))
		if len(files) < 20 {
			t.Fatalf("only %d Pillow results:\n%s", len(files), out)
		}
		for _, f := range files {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			img := strings.TrimSuffix(f, ".u8")
			if err := p.FileUint8(img, got); err != nil {
				t.Errorf("size %d: %v", size, err)
				continue
			}
			if bad := countDiff(got, want); bad > 0 {
				t.Errorf("size %d, %s: %d of %d values differ from Pillow", size, filepath.Base(img), bad, len(want))
			}
		}
		p.Close()
	}
}

func countDiff(a, b []uint8) int {
	if len(a) != len(b) {
		return max(len(a), len(b))
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

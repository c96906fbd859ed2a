package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/preprocess"
)

// pillowCrop has Pillow crop image to box, save the crop as a PNG (lossless,
// so the crop file is exactly Pillow's crop) and compute CLIP's transform of
// the crop at size 224 (CHW uint8).
func pillowCrop(t *testing.T, image, box string) (cropPNG string, want []uint8) {
	t.Helper()
	dir := t.TempDir()
	cropPNG, u8 := filepath.Join(dir, "crop.png"), filepath.Join(dir, "crop.u8")
	script := `import sys
sys.path.insert(0, sys.argv[1])
from pillow_reference import transform
from PIL import Image
crop = Image.open(sys.argv[2]).crop(tuple(int(v) for v in sys.argv[3].split(",")))
crop.save(sys.argv[4])
open(sys.argv[5], "wb").write(transform(crop, 224))
`
	helpers := filepath.Join(testmodel.RepoRoot(t), "preprocess", "testdata")
	if out, err := exec.Command(testmodel.Python(), "-c", script, helpers, image, box, cropPNG, u8).CombinedOutput(); err != nil {
		t.Fatalf("Pillow crop: %v\n%s", err, out)
	}
	want, err := os.ReadFile(u8)
	if err != nil {
		t.Fatal(err)
	}
	return cropPNG, want
}

// TestBoxFlagsMatchPillow is the CLI contract of --box: `preprocess --box`
// writes the tensor of CLIP's transform of Pillow's img.crop(box), and
// `classify --box` scores exactly what classifying Pillow's crop does.
func TestBoxFlagsMatchPillow(t *testing.T) {
	image := filepath.Join(testmodel.SharedDir(t), "reference", "images", "img1_1280x720.jpg")
	const box = "101,37,801,660" // odd offsets, 700x623
	cropPNG, want := pillowCrop(t, image, box)

	dir := t.TempDir()
	boxed, whole := filepath.Join(dir, "boxed.f32"), filepath.Join(dir, "crop.f32")
	clipd(t, "", "preprocess", "--size", "224", "--box", box, image, "--out", boxed)
	clipd(t, "", "preprocess", "--size", "224", cropPNG, "--out", whole)
	got, err := os.ReadFile(boxed)
	if err != nil {
		t.Fatal(err)
	}
	ofCrop, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ofCrop) {
		t.Error("preprocess --box differs from preprocessing Pillow's crop")
	}
	// The tensor is Pillow's uint8 pixels through ToTensor and Normalize.
	cfg := preprocess.DefaultConfig()
	n := 224 * 224
	if len(got) != 4*3*n {
		t.Fatalf("%d bytes, want %d", len(got), 4*3*n)
	}
	bad := 0
	for i, v := range want {
		c := i / n
		f := math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:]))
		if f != (float32(v)/255-cfg.Mean[c])/cfg.Std[c] {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("preprocess --box: %d of %d values are not Pillow's crop transformed", bad, len(want))
	}

	model := testmodel.TinyBundle(t, "state")
	labelsFile := filepath.Join(dir, "l.txt")
	if err := os.WriteFile(labelsFile, []byte("a cat\na dog\na red square\na blue circle\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"classify", "--model", model, "--backend", "onnxruntime", "--labels", labelsFile, "--top-k", "0"}
	var withBox, ofPNG struct {
		Image string
		Box   []int
		Top   []struct {
			Label string
			Score float64
		}
	}
	if err := json.Unmarshal([]byte(clipd(t, "", append(args, "--box", box, image)...)), &withBox); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(clipd(t, "", append(args, cropPNG)...)), &ofPNG); err != nil {
		t.Fatal(err)
	}
	if len(withBox.Top) != 4 || len(withBox.Top) != len(ofPNG.Top) {
		t.Fatalf("classify listed %d and %d labels, want 4", len(withBox.Top), len(ofPNG.Top))
	}
	for i := range withBox.Top {
		if withBox.Top[i] != ofPNG.Top[i] {
			t.Errorf("rank %d: --box gives %+v, Pillow's crop %+v", i, withBox.Top[i], ofPNG.Top[i])
		}
	}
	if len(withBox.Box) != 4 || withBox.Box[0] != 101 || withBox.Box[3] != 660 || ofPNG.Box != nil {
		t.Errorf("box field: with --box %v, without %v", withBox.Box, ofPNG.Box)
	}
}

func TestBoxFlagErrors(t *testing.T) {
	image := filepath.Join(testmodel.SharedDir(t), "reference", "images", "img1_1280x720.jpg")
	out := filepath.Join(t.TempDir(), "t.f32")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"preprocess", "--box", "1,2,3", image, "--out", out}, "want x1,y1,x2,y2 as four integers"},
		{[]string{"preprocess", "--box", "0,0,1281,720", image, "--out", out}, "img1_1280x720.jpg: box 0,0,1281,720 is out of range: x2 1281 is beyond"},
		{[]string{"preprocess", "--box", "10,10,5,20", image, "--out", out}, "is inverted"},
		{[]string{"classify", "--model", "m", "--labels", "l", "--box", "a,b,c,d", image}, "four integers"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		err := dispatch(context.Background(), c.args, strings.NewReader(""), &stdout, &stderr)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if msg := err.Error() + stderr.String(); !strings.Contains(msg, c.want) {
			t.Errorf("%v: error %q does not mention %q", c.args, msg, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed preprocess wrote its output")
	}
}

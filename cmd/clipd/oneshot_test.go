package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/testmodel"
)

// clipd runs the CLI in-process and returns stdout, failing on error.
func clipd(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := dispatch(context.Background(), args, strings.NewReader(stdin), &out, &errOut); err != nil {
		t.Fatalf("clipd %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// TestEmbedMatchesReference is the fidelity check of the whole chain: the
// exported reference checkpoints, our preprocessing of the reference images,
// our tokenizer and ONNX Runtime give the original implementation's
// embeddings.
func TestEmbedMatchesReference(t *testing.T) {
	exp, ref := testmodel.LoadExpected(t), filepath.Join(testmodel.SharedDir(t), "reference")
	for _, form := range []string{"state", "jit"} {
		t.Run(form, func(t *testing.T) {
			dir := testmodel.TinyBundle(t, form)
			args := []string{"embed", "--model", dir, "--backend", "onnxruntime"}
			for _, im := range exp.Images {
				args = append(args, "--image", filepath.Join(ref, im.Image))
			}
			for _, tx := range exp.Texts {
				args = append(args, "--text", tx)
			}
			lines := strings.Split(strings.TrimSpace(clipd(t, "", args...)), "\n")
			if len(lines) != len(exp.Images)+len(exp.Texts) {
				t.Fatalf("got %d lines, want %d", len(lines), len(exp.Images)+len(exp.Texts))
			}
			worst := 1.0
			for i, line := range lines {
				var got struct {
					Image, Text string
					Embedding   []float32
				}
				if err := json.Unmarshal([]byte(line), &got); err != nil {
					t.Fatal(err)
				}
				var want []float32
				if i < len(exp.Images) {
					want = exp.Images[i].ImageEmbed
				} else {
					want = exp.TextEmbeds[i-len(exp.Images)]
					if got.Text != exp.Texts[i-len(exp.Images)] {
						t.Fatalf("line %d is for %q, want %q", i, got.Text, exp.Texts[i-len(exp.Images)])
					}
				}
				c := testmodel.Cosine(got.Embedding, want)
				worst = min(worst, c)
				if c < 0.99999 {
					t.Errorf("line %d (%s%s): cosine %.7f < 0.99999", i, got.Image, got.Text, c)
				}
				var norm float64
				for _, v := range got.Embedding {
					norm += float64(v) * float64(v)
				}
				if math.Abs(norm-1) > 1e-5 {
					t.Errorf("line %d: embedding not L2-normalized (|v|² = %f)", i, norm)
				}
			}
			t.Logf("%s: worst cosine to the reference over %d embeddings: %.8f", form, len(lines), worst)
		})
	}
}

func TestClassifyMatchesReferenceProbabilities(t *testing.T) {
	exp, ref := testmodel.LoadExpected(t), filepath.Join(testmodel.SharedDir(t), "reference")
	dir := testmodel.TinyBundle(t, "state")
	labelsFile := filepath.Join(t.TempDir(), "ten.txt")
	if err := os.WriteFile(labelsFile, []byte("# the reference labels\n"+strings.Join(exp.Labels, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"classify", "--model", dir, "--labels", labelsFile, "--top-k", "0"}
	for _, im := range exp.Images {
		args = append(args, filepath.Join(ref, im.Image))
	}
	lines := strings.Split(strings.TrimSpace(clipd(t, "", args...)), "\n")
	if len(lines) != len(exp.Images) {
		t.Fatalf("got %d lines, want %d", len(lines), len(exp.Images))
	}
	worst := 0.0
	for i, line := range lines {
		var got struct {
			Image string
			Top   []struct {
				Label string
				Score float64
			}
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Top) != len(exp.Labels) {
			t.Fatalf("%s: --top-k 0 listed %d labels, want %d", got.Image, len(got.Top), len(exp.Labels))
		}
		for j := 1; j < len(got.Top); j++ {
			if got.Top[j].Score > got.Top[j-1].Score {
				t.Errorf("%s: scores not best first", got.Image)
			}
		}
		for _, m := range got.Top {
			k := indexOf(exp.Labels, m.Label)
			if k < 0 {
				t.Fatalf("unknown label %q", m.Label)
			}
			d := math.Abs(m.Score - float64(exp.Images[i].Probs[k]))
			worst = max(worst, d)
			if d > 1e-4 {
				t.Errorf("%s %s: probability %.6f, reference %.6f", got.Image, m.Label, m.Score, exp.Images[i].Probs[k])
			}
		}
	}
	t.Logf("largest probability difference to the reference: %.2e", worst)
}

func indexOf(xs []string, x string) int {
	for i, s := range xs {
		if s == x {
			return i
		}
	}
	return -1
}

func TestTokenizeMatchesReference(t *testing.T) {
	shared := testmodel.SharedDir(t)
	data, err := os.ReadFile(filepath.Join(shared, "reference", "tokenizer.jsonl"))
	if err != nil {
		t.Skipf("reference tokenizer data missing: %v", err)
	}
	var stdin strings.Builder
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var row struct {
			Text     string          `json:"text"`
			Tokens77 json.RawMessage `json:"tokens77"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(row.Text)
		stdin.Write(append(b, '\n'))
		var ids []int32
		json.Unmarshal(row.Tokens77, &ids)
		canon, _ := json.Marshal(ids)
		want = append(want, string(canon))
	}
	vocab := filepath.Join(shared, "clip", "bpe_simple_vocab_16e6.txt.gz")
	got := strings.Split(strings.TrimSpace(clipd(t, stdin.String(), "tokenize", "--vocab", vocab)), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestPreprocessWritesReferenceTensor(t *testing.T) {
	shared := testmodel.SharedDir(t)
	ref := filepath.Join(shared, "reference", "images")
	for _, name := range []string{"img2_1920x1080.jpg", "img5_480x640.png"} {
		out := filepath.Join(t.TempDir(), "t.f32")
		clipd(t, "", "preprocess", "--size", "224", filepath.Join(ref, name), "--out", out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(ref, name+".f32"))
		if err != nil {
			t.Skipf("reference tensor missing: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d bytes, want %d", name, len(got), len(want))
		}
		var worst float64
		for i := 0; i < len(got); i += 4 {
			g := math.Float32frombits(binary.LittleEndian.Uint32(got[i:]))
			w := math.Float32frombits(binary.LittleEndian.Uint32(want[i:]))
			worst = max(worst, math.Abs(float64(g-w)))
		}
		// One uint8 step is 1/255/std ≈ 0.0146; float rounding is ~1e-6.
		if worst > 1e-5 {
			t.Errorf("%s: largest difference to the reference tensor %.2e", name, worst)
		}
	}
}

func TestCLIErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"embed", "--text", "x"}, "--model DIR is required"},
		{[]string{"embed", "--model", "/nonexistent", "--text", "x"}, "/nonexistent"},
		{[]string{"tokenize"}, "--vocab FILE or --model DIR"},
		{[]string{"tokenize", "--vocab", "/nonexistent/vocab.gz"}, "/nonexistent/vocab.gz"},
		{[]string{"classify", "--model", "m", "--labels", "/nonexistent/l.txt", "x.png"}, "/nonexistent/l.txt"},
		{[]string{"nosuch"}, "usage"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := dispatch(context.Background(), c.args, strings.NewReader(""), &out, &errOut)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if msg := err.Error() + errOut.String(); !strings.Contains(msg, c.want) {
			t.Errorf("%v: error %q does not mention %q", c.args, msg, c.want)
		}
	}
}

func TestTokenizeRejectsNonJSONLine(t *testing.T) {
	vocab := filepath.Join(testmodel.SharedDir(t), "clip", "bpe_simple_vocab_16e6.txt.gz")
	var out, errOut bytes.Buffer
	err := dispatch(context.Background(), []string{"tokenize", "--vocab", vocab}, strings.NewReader("\"ok\"\nnot json\n"), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "stdin:2") {
		t.Fatalf("error %v does not name stdin:2", err)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("the good first line was not printed before the error: %q", out.String())
	}
}

// Output that cannot be written (a full disk, here /dev/full) is an error,
// not a silent exit 0 with lines missing.
func TestTokenizeReportsAFailedWrite(t *testing.T) {
	vocab := filepath.Join(testmodel.SharedDir(t), "clip", "bpe_simple_vocab_16e6.txt.gz")
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("environment: no /dev/full: %v", err)
	}
	defer full.Close()
	var errOut bytes.Buffer
	err = dispatch(context.Background(), []string{"tokenize", "--vocab", vocab}, strings.NewReader("\"a photo of a dog\"\n"), full, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("writing to /dev/full: error %v, want ENOSPC", err)
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/synth"
	"github.com/clipd/clipd/tokenizer"
)

func python(t *testing.T) string {
	py := os.Getenv("CLIPD_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(py); err != nil {
		t.Skipf("no python at %s (set CLIPD_PYTHON): %v", py, err)
	}
	return py
}

// The trainer tokenizes captions in Python (tools/demo/bpe.py) while clipd
// tokenizes prompts in Go; the model is only meaningful if both give the
// same ids. Checked on a learnt vocabulary (tools/learn-bpe) and on the
// committed model's, over training captions and evaluation prompts.
func TestPythonAndGoTokenizersAgree(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	c := genConfig{Out: dir, N: 300, Seed: 77, Size: 32, Jobs: 2, HeldOut: synth.HeldOut}
	if err := generate(c, func(int) {}); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, r := range readRecords(t, dir) {
		texts = append(texts, r.Captions...)
	}
	for _, p := range synth.AllPairs() {
		for _, tmpl := range append(append([]string{}, synth.EvalTemplates...), colorTemplates...) {
			texts = append(texts, engine.ExpandTemplates(p.String(), []string{tmpl})...)
		}
	}
	texts = append(texts, "A Zebra, 42 dogs & cats!", "  red\tcircle  ")
	textFile := filepath.Join(dir, "texts.json")
	raw, _ := json.Marshal(texts)
	if err := os.WriteFile(textFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(repoRoot(t), "tools")
	vocabs := []string{filepath.Join(dir, "vocab.txt.gz")}
	if out, err := exec.Command(py, filepath.Join(tools, "learn-bpe"), filepath.Join(dir, "captions.jsonl"), vocabs[0]).CombinedOutput(); err != nil {
		t.Fatalf("learn-bpe: %v\n%s", err, out)
	}
	if committed := filepath.Join(repoRoot(t), "models", "demo", "textual", "bpe_simple_vocab_16e6.txt.gz"); fileExists(committed) {
		vocabs = append(vocabs, committed)
	}
	const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
from demo import bpe
tok = bpe.Tokenizer(sys.argv[2])
print(json.dumps([tok.tokenize(t) for t in json.load(open(sys.argv[3]))]))
`
	for _, vocab := range vocabs {
		out, err := exec.Command(py, "-c", script, tools, vocab, textFile).Output()
		if err != nil {
			t.Fatalf("python tokenizer on %s: %v", vocab, err)
		}
		var want [][]int32
		if err := json.Unmarshal(out, &want); err != nil {
			t.Fatal(err)
		}
		tok, err := tokenizer.LoadBPE(vocab)
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range texts {
			got, _ := tok.Tokenize(text, tokenizer.ContextLength)
			if !equalIDs(got, want[i]) {
				t.Fatalf("%s: %q: Go %v, Python %v", vocab, text, trimZeros(got), trimZeros(want[i]))
			}
		}
		t.Logf("%s: %d texts agree (vocabulary %d)", vocab, len(texts), tok.VocabSize())
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// trimZeros shows ids up to the padding, for readable failures.
func trimZeros(ids []int32) string {
	n := len(ids)
	for n > 0 && ids[n-1] == 0 {
		n--
	}
	b, _ := json.Marshal(ids[:n])
	return string(b)
}

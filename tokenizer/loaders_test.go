package tokenizer

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hfFiles converts the original merges file into the Hugging Face forms an
// immich bundle ships, the way the CLIP conversion does: vocab ids in
// SimpleTokenizer order, merges with a "#version" header.
func hfFiles(t *testing.T) (vocab map[string]int32, merges []string) {
	t.Helper()
	f, err := os.Open(originalVocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")[1 : maxOriginalMerges+1]
	order, symbol := byteSymbols()
	vocab = make(map[string]int32)
	add := func(tok string) { vocab[tok] = int32(len(vocab)) }
	for _, b := range order {
		add(symbol[b])
	}
	for _, b := range order {
		add(symbol[b] + endOfWord)
	}
	for _, line := range lines {
		add(strings.ReplaceAll(line, " ", ""))
	}
	add(startOfText)
	add(endOfText)
	return vocab, lines
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReferenceRowsHuggingFaceFiles(t *testing.T) {
	rows := loadReference(t)
	vocab, merges := hfFiles(t)

	vocabDir := t.TempDir()
	writeJSON(t, filepath.Join(vocabDir, "vocab.json"), vocab)
	if err := os.WriteFile(filepath.Join(vocabDir, "merges.txt"), []byte("#version: 0.2\n"+strings.Join(merges, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	stringMerges := t.TempDir()
	pairMerges := t.TempDir()
	pairs := make([][2]string, len(merges))
	for i, m := range merges {
		left, right, _ := strings.Cut(m, " ")
		pairs[i] = [2]string{left, right}
	}
	// Like openai/clip-vit-base-patch32: the specials sit in model.vocab
	// and again in added_tokens.
	added := []map[string]any{{"id": 49406, "content": startOfText}, {"id": 49407, "content": endOfText}}
	writeJSON(t, filepath.Join(stringMerges, "tokenizer.json"), map[string]any{
		"added_tokens": added,
		"model":        map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "end_of_word_suffix": "</w>"},
	})
	writeJSON(t, filepath.Join(pairMerges, "tokenizer.json"), map[string]any{
		"added_tokens": added,
		"model":        map[string]any{"type": "BPE", "vocab": vocab, "merges": pairs},
	})

	for name, dir := range map[string]string{"vocab.json+merges.txt": vocabDir, "tokenizer.json string merges": stringMerges, "tokenizer.json pair merges": pairMerges} {
		t.Run(name, func(t *testing.T) {
			tok, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tok.SOT() != 49406 || tok.EOT() != 49407 || tok.VocabSize() != 49408 {
				t.Fatalf("SOT/EOT/VocabSize = %d/%d/%d", tok.SOT(), tok.EOT(), tok.VocabSize())
			}
			checkReference(t, tok, rows)
		})
	}
}

func TestLoadDirFindsBPEAndExplainsAbsence(t *testing.T) {
	data, err := os.ReadFile(originalVocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("a photo of a dog."); len(got) != 6 || got[4] != 1929 {
		t.Fatalf("Encode via LoadDir = %v", got)
	}
	_, err = LoadDir(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "tokenizer.json") || !strings.Contains(err.Error(), "bpe_simple_vocab") {
		t.Fatalf("empty dir error should list what was looked for, got %v", err)
	}
}

// A small vocabulary in the original format, as the project writes its own.
func TestSmallBPEVocabulary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "small.txt")
	if err := os.WriteFile(path, []byte("#version: test\nd o\ndo g</w>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadBPE(path)
	if err != nil {
		t.Fatal(err)
	}
	// 512 byte symbols, 2 merges, SOT, EOT.
	if tok.VocabSize() != 516 || tok.SOT() != 514 || tok.EOT() != 515 {
		t.Fatalf("VocabSize/SOT/EOT = %d/%d/%d, want 516/514/515", tok.VocabSize(), tok.SOT(), tok.EOT())
	}
	if got := tok.Encode("Dog dog"); len(got) != 2 || got[0] != 513 || got[1] != 513 {
		t.Fatalf(`Encode("Dog dog") = %v, want [513 513]`, got)
	}
	if got := tok.Encode("dot"); len(got) != 2 || got[0] != 512 {
		t.Fatalf(`Encode("dot") = %v, want "do" (512) then "t</w>"`, got)
	}
}

func TestBrokenFilesNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct {
		name, path string
		want       []string
	}{
		{"three symbols", write("three.txt", "#v\na b\nc d e\n"), []string{"three.txt:3", "malformed merge"}},
		{"blank line", write("blank.txt", "#v\na b\n\nc d\n"), []string{"blank.txt:3"}},
		{"bad gzip", write("bad.txt.gz", "\x1f\x8bnot really gzip"), []string{"bad.txt.gz", "bad gzip"}},
		{"missing", filepath.Join(dir, "nope.txt.gz"), []string{"nope.txt.gz", "no such file"}},
		{"empty", write("empty.txt", ""), []string{"empty.txt", "empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadBPE(c.path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	hf := func(files map[string]string) string {
		d := t.TempDir()
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	hfCases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"json syntax", map[string]string{"tokenizer.json": "{\n\"model\": {\n\"vocab\": {,}}}"}, []string{"tokenizer.json", "line 3"}},
		{"not BPE", map[string]string{"tokenizer.json": `{"model":{"type":"WordPiece","vocab":{"a":0}}}`}, []string{"tokenizer.json", "WordPiece"}},
		{"bad merge", map[string]string{"tokenizer.json": `{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b c"]}}`}, []string{"tokenizer.json", "model.merges[0]"}},
		{"missing byte symbols", map[string]string{"tokenizer.json": `{"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`}, []string{"tokenizer.json", "byte symbol"}},
		{"merges.txt missing", map[string]string{"vocab.json": `{}`}, []string{"merges.txt"}},
		{"merges.txt bad line", map[string]string{"vocab.json": `{}`, "merges.txt": "#version: 0.2\na b\nab\n"}, []string{"merges.txt:3"}},
	}
	for _, c := range hfCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadHF(hf(c.files))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func FuzzTokenize(f *testing.F) {
	tok, err := LoadBPE(originalVocabPath(f))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"", "a photo of a dog.", "&amp;&#x110000;&#0;&ampx", "<|endoftext|><|ſtartoftext|>", "cafÃ© ΣΑΣ İ", "\x1b[31mred\x1b[0m\r\n\u2028", "\xff\xfe invalid utf8", strings.Repeat("very ", 200), "Ã\xa0 Ã quelle ĂƒÂ©", "ＡＢＣ ﬁ ‘x’"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ids, _ := tok.Tokenize(text, ContextLength)
		if len(ids) != ContextLength || ids[0] != tok.SOT() {
			t.Fatalf("%q: %d ids starting %d", text, len(ids), ids[0])
		}
		eot := false
		for _, id := range ids[1:] {
			if id == tok.EOT() {
				eot = true
			}
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("%q: id %d outside the vocabulary", text, id)
			}
		}
		if !eot {
			t.Fatalf("%q: no EOT in %v", text, ids)
		}
	})
}

func BenchmarkTokenizePrompts(b *testing.B) {
	tok, err := LoadBPE(originalVocabPath(b))
	if err != nil {
		b.Fatal(err)
	}
	rows := loadReference(b)[37:]
	run := func(b *testing.B, coldCache bool) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if coldCache {
				tok.cache.reset()
			}
			for _, row := range rows {
				tok.Tokenize(row.Text, ContextLength)
			}
		}
		b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "prompts/s")
	}
	b.Run("warm-cache", func(b *testing.B) { run(b, false) })
	b.Run("cold-cache", func(b *testing.B) { run(b, true) })
}

package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sharedDir locates the read-only reference data: $CLIPD_SHARED, else
// ../shared next to the repository root.
func sharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CLIPD_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "reference", "tokenizer.jsonl")); err != nil {
		t.Skipf("reference data missing (set CLIPD_SHARED to the dir holding reference/tokenizer.jsonl and clip/bpe_simple_vocab_16e6.txt.gz): %v", err)
	}
	return dir
}

func originalVocabPath(t testing.TB) string {
	return filepath.Join(sharedDir(t), "clip", "bpe_simple_vocab_16e6.txt.gz")
}

type referenceRow struct {
	Text     string  `json:"text"`
	IDs      []int32 `json:"ids"`
	Tokens77 []int32 `json:"tokens77"`
}

func loadReference(t testing.TB) []referenceRow {
	t.Helper()
	path := filepath.Join(sharedDir(t), "reference", "tokenizer.jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []referenceRow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		var row referenceRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 38 {
		t.Fatalf("%s: only %d rows", path, len(rows))
	}
	return rows
}

func loadOriginal(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := LoadBPE(originalVocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkReference compares every reference row; it reports all mismatches
// so a regression shows its full extent.
func checkReference(t *testing.T, tok *Tokenizer, rows []referenceRow) {
	t.Helper()
	failures := 0
	for i, row := range rows {
		ids := tok.Encode(row.Text)
		if len(ids) == 0 && len(row.IDs) == 0 {
			ids = row.IDs
		}
		if !reflect.DeepEqual(ids, row.IDs) {
			failures++
			t.Errorf("row %d %q (cleaned %q):\n got ids %v\nwant ids %v", i, row.Text, Clean(row.Text), ids, row.IDs)
			continue
		}
		tokens, truncated := tok.Tokenize(row.Text, ContextLength)
		if !reflect.DeepEqual(tokens, row.Tokens77) {
			failures++
			t.Errorf("row %d %q:\n got tokens77 %v\nwant tokens77 %v", i, row.Text, tokens, row.Tokens77)
		}
		if wantTruncated := len(row.IDs)+2 > ContextLength; truncated != wantTruncated {
			t.Errorf("row %d: truncated = %v, want %v", i, truncated, wantTruncated)
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d reference rows differ", failures, len(rows))
	}
}

func TestReferenceRowsOriginalVocab(t *testing.T) {
	tok := loadOriginal(t)
	if tok.SOT() != 49406 || tok.EOT() != 49407 || tok.VocabSize() != 49408 {
		t.Fatalf("SOT/EOT/VocabSize = %d/%d/%d, want 49406/49407/49408", tok.SOT(), tok.EOT(), tok.VocabSize())
	}
	rows := loadReference(t)
	checkReference(t, tok, rows)
	// Second pass runs from the warm cache and must not change anything.
	checkReference(t, tok, rows)
}

func TestTruncation(t *testing.T) {
	tok := loadOriginal(t)
	text := "a photo of a" + strings.Repeat(" very", 100) + " big dog"
	ids, truncated := tok.Tokenize(text, 77)
	if !truncated {
		t.Fatal("104-word text not reported truncated")
	}
	if len(ids) != 77 || ids[0] != tok.SOT() || ids[76] != tok.EOT() {
		t.Fatalf("truncated tokens: len %d, first %d, last %d", len(ids), ids[0], ids[76])
	}
	body := tok.Encode(text)
	if !reflect.DeepEqual(ids[1:76], body[:75]) {
		t.Fatalf("truncated tokens do not start with the text's ids")
	}
	// Exactly full: 75 text ids + SOT + EOT is not a truncation.
	exact := strings.TrimSpace(strings.Repeat("x ", 75))
	ids, truncated = tok.Tokenize(exact, 77)
	if truncated || ids[76] != tok.EOT() {
		t.Fatalf("75 ids: truncated=%v last=%d", truncated, ids[76])
	}
	ids, truncated = tok.Tokenize(exact+" x", 77)
	if !truncated || ids[76] != tok.EOT() || ids[75] == tok.EOT() {
		t.Fatalf("76 ids: truncated=%v tail=%v", truncated, ids[74:])
	}
	// Other context lengths behave like clip.tokenize(context_length=n).
	ids, truncated = tok.Tokenize("a photo of a dog", 4)
	if want := []int32{tok.SOT(), 320, 1125, tok.EOT()}; !truncated || !reflect.DeepEqual(ids, want) {
		t.Fatalf("context 4: %v %v, want %v true", ids, truncated, want)
	}
	ids, _ = tok.Tokenize("dog", 0)
	if len(ids) != ContextLength {
		t.Fatalf("context 0 gave %d ids, want the default %d", len(ids), ContextLength)
	}
}

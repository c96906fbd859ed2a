package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/clipd/clipd/internal/safefile"
)

// cacheLimit bounds the BPE cache; the CLIP paper's 26 label sets with all
// their templates use fewer distinct words than this.
const cacheLimit = 1 << 16

// byteSymbols returns CLIP's bytes_to_unicode table in its dictionary
// order, which is also the order of the first 256 vocabulary entries: the
// printable Latin-1 bytes first, then every other byte mapped to U+0100 up.
func byteSymbols() (order [256]byte, symbol [256]string) {
	n := 0
	printable := func(b int) bool {
		return ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
	}
	for b := 0; b < 256; b++ {
		if printable(b) {
			order[n] = byte(b)
			symbol[b] = string(rune(b))
			n++
		}
	}
	extra := 0
	for b := 0; b < 256; b++ {
		if !printable(b) {
			order[n] = byte(b)
			symbol[b] = string(rune(256 + extra))
			extra++
			n++
		}
	}
	return order, symbol
}

// maxFileBytes bounds each tokenizer file, and a gzip file once
// decompressed (a gzip bomb would otherwise expand without limit). CLIP's
// merges file is 1.3 MB, 4 MB unpacked; tokenizer.json about 3.5 MB.
const maxFileBytes = 64 << 20

// LoadBPE reads a CLIP merges file such as bpe_simple_vocab_16e6.txt.gz,
// gzip-compressed or plain.
func LoadBPE(path string) (*Tokenizer, error) {
	data, err := safefile.ReadFile(path, maxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: bad gzip: %w", path, err)
		}
		data, err = io.ReadAll(safefile.LimitReader(zr, maxFileBytes, "decompressed"))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: bad gzip: %w", path, err)
		}
	}
	return ParseBPE(data, path)
}

// ParseBPE builds a tokenizer from the contents of a CLIP merges file: a
// header line, then one "left right" merge per line. Like the original it
// uses at most 48894 merges and builds the vocabulary from them (256 byte
// symbols, the same with "</w>", one entry per merge, then SOT and EOT).
// name only labels errors.
func ParseBPE(data []byte, name string) (*Tokenizer, error) {
	merges, err := parseMergeLines(data, name, maxOriginalMerges)
	if err != nil {
		return nil, err
	}
	order, symbol := byteSymbols()
	vocab := make([]string, 0, 512+len(merges)+2)
	for _, b := range order {
		vocab = append(vocab, symbol[b])
	}
	for _, b := range order {
		vocab = append(vocab, symbol[b]+endOfWord)
	}
	for _, m := range merges {
		vocab = append(vocab, m.left+m.right)
	}
	vocab = append(vocab, startOfText, endOfText)
	// dict(zip(vocab, range(len(vocab)))): a repeated entry keeps its last id.
	ids := make(map[string]int32, len(vocab))
	for i, tok := range vocab {
		ids[tok] = int32(i)
	}
	return build(ids, len(vocab), merges, name)
}

type merge struct {
	left, right string
	// where names the merge in errors: "file:line" or "file: model.merges[i]".
	where string
}

// parseMergeLines skips the header line and returns up to limit merges.
// A trailing newline does not count as an empty merge.
func parseMergeLines(data []byte, name string, limit int) ([]merge, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: empty file, expected a header line and merges", name)
	}
	var merges []merge
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue
		}
		if len(merges) == limit {
			break
		}
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			return nil, fmt.Errorf("tokenizer: %s:%d: malformed merge %q: want two symbols separated by a space", name, line, sc.Text())
		}
		merges = append(merges, merge{left: fields[0], right: fields[1], where: fmt.Sprintf("%s:%d", name, line)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: %s:%d: %w", name, line+1, err)
	}
	return merges, nil
}

// build checks that the vocabulary covers every byte symbol and every merge
// result, so that encoding can never meet an unknown symbol.
func build(ids map[string]int32, vocabSize int, merges []merge, name string) (*Tokenizer, error) {
	t := &Tokenizer{
		merges:    make(map[uint64]mergeRule, len(merges)),
		vocabSize: vocabSize,
		cache:     newBPECache(cacheLimit),
	}
	_, symbol := byteSymbols()
	for b := 0; b < 256; b++ {
		id, ok := ids[symbol[b]]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s: vocabulary lacks the byte symbol %q (byte 0x%02x)", name, symbol[b], b)
		}
		t.byteSymbol[b] = id
		id, ok = ids[symbol[b]+endOfWord]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s: vocabulary lacks the byte symbol %q (byte 0x%02x)", name, symbol[b]+endOfWord, b)
		}
		t.byteSymbolEnd[b] = id
	}
	var ok bool
	if t.sot, ok = ids[startOfText]; !ok {
		return nil, fmt.Errorf("tokenizer: %s: vocabulary lacks %s", name, startOfText)
	}
	if t.eot, ok = ids[endOfText]; !ok {
		return nil, fmt.Errorf("tokenizer: %s: vocabulary lacks %s", name, endOfText)
	}
	for rank, m := range merges {
		result, ok := ids[m.left+m.right]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s: merge %q %q produces %q, which is not in the vocabulary", m.where, m.left, m.right, m.left+m.right)
		}
		left, okLeft := ids[m.left]
		right, okRight := ids[m.right]
		if !okLeft || !okRight {
			// Words only ever hold vocabulary symbols, so such a merge can
			// never apply; the original keeps it silently, and so do we.
			continue
		}
		// dict(zip(merges, range(...))): a repeated merge keeps its last rank.
		t.merges[pairKey(left, right)] = mergeRule{rank: int32(rank), result: result}
	}
	return t, nil
}

// LoadHF reads the Hugging Face form of a CLIP tokenizer as immich model
// bundles ship it: dir/tokenizer.json, or else dir/vocab.json with
// dir/merges.txt.
func LoadHF(dir string) (*Tokenizer, error) {
	jsonPath := filepath.Join(dir, "tokenizer.json")
	data, err := safefile.ReadFile(jsonPath, maxFileBytes)
	if err == nil {
		return ParseHFTokenizerJSON(data, jsonPath)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	vocabPath := filepath.Join(dir, "vocab.json")
	mergesPath := filepath.Join(dir, "merges.txt")
	vocabData, err := safefile.ReadFile(vocabPath, maxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: no tokenizer.json in %s, and %w", dir, err)
	}
	mergesData, err := safefile.ReadFile(mergesPath, maxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return ParseHFVocabMerges(vocabData, vocabPath, mergesData, mergesPath)
}

// ParseHFVocabMerges builds a tokenizer from vocab.json ({token: id}) and
// merges.txt (a "#version" header line, then "left right" lines).
func ParseHFVocabMerges(vocabJSON []byte, vocabName string, mergesTxt []byte, mergesName string) (*Tokenizer, error) {
	var vocab map[string]int32
	if err := json.Unmarshal(vocabJSON, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", vocabName, jsonError(vocabJSON, err))
	}
	if !bytes.HasPrefix(mergesTxt, []byte("#")) {
		// Without a "#version" header the first line is a merge.
		mergesTxt = append([]byte("#\n"), mergesTxt...)
	}
	merges, err := parseMergeLines(mergesTxt, mergesName, maxOriginalMerges)
	if err != nil {
		return nil, err
	}
	return build(vocab, vocabSizeOf(vocab), merges, vocabName)
}

// vocabSizeOf is one past the largest id, the embedding size a model needs.
func vocabSizeOf(vocab map[string]int32) int {
	size := 0
	for _, id := range vocab {
		if int(id)+1 > size {
			size = int(id) + 1
		}
	}
	return size
}

type hfTokenizerFile struct {
	Model struct {
		Type   string            `json:"type"`
		Vocab  map[string]int32  `json:"vocab"`
		Merges []json.RawMessage `json:"merges"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
}

// ParseHFTokenizerJSON builds a tokenizer from a Hugging Face tokenizer.json
// whose model is BPE; merges may be "left right" strings or [left, right]
// pairs. SOT and EOT come from the vocabulary, or from added_tokens.
func ParseHFTokenizerJSON(data []byte, name string) (*Tokenizer, error) {
	var file hfTokenizerFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, jsonError(data, err))
	}
	if file.Model.Type != "" && file.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer: %s: model.type is %q, want BPE", name, file.Model.Type)
	}
	if len(file.Model.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: model.vocab is missing or empty", name)
	}
	vocab := file.Model.Vocab
	for _, added := range file.AddedTokens {
		if _, ok := vocab[added.Content]; !ok {
			vocab[added.Content] = added.ID
		}
	}
	if len(file.Model.Merges) > maxOriginalMerges {
		file.Model.Merges = file.Model.Merges[:maxOriginalMerges]
	}
	merges := make([]merge, 0, len(file.Model.Merges))
	for i, raw := range file.Model.Merges {
		var text string
		var pair []string
		switch {
		case json.Unmarshal(raw, &text) == nil:
			pair = strings.Split(text, " ")
		case json.Unmarshal(raw, &pair) == nil:
		default:
			return nil, fmt.Errorf("tokenizer: %s: model.merges[%d] is %s: want \"left right\" or [\"left\", \"right\"]", name, i, raw)
		}
		if len(pair) != 2 || pair[0] == "" || pair[1] == "" {
			return nil, fmt.Errorf("tokenizer: %s: model.merges[%d] is %s: want two symbols", name, i, raw)
		}
		merges = append(merges, merge{left: pair[0], right: pair[1], where: fmt.Sprintf("%s: model.merges[%d]", name, i)})
	}
	return build(vocab, vocabSizeOf(vocab), merges, name)
}

// jsonError adds the line number to a JSON syntax error.
func jsonError(data []byte, err error) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		line := 1 + bytes.Count(data[:min(int(syntax.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		line := 1 + bytes.Count(data[:min(int(typeErr.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

// LoadDir loads whichever tokenizer a model bundle's textual directory
// holds: tokenizer.json, vocab.json with merges.txt, or a CLIP
// bpe_simple_vocab*.txt[.gz] merges file, in that order of preference.
func LoadDir(dir string) (*Tokenizer, error) {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	if exists("tokenizer.json") || (exists("vocab.json") && exists("merges.txt")) {
		return LoadHF(dir)
	}
	var candidates []string
	for _, pattern := range []string{"bpe_simple_vocab*.txt.gz", "bpe_simple_vocab*.txt"} {
		found, _ := filepath.Glob(filepath.Join(dir, pattern))
		candidates = append(candidates, found...)
	}
	sort.Strings(candidates)
	if len(candidates) > 0 {
		return LoadBPE(candidates[0])
	}
	return nil, fmt.Errorf("tokenizer: %s holds no tokenizer: looked for tokenizer.json, vocab.json with merges.txt, and bpe_simple_vocab*.txt[.gz]", dir)
}

package tokenizer

import (
	"sync"
)

// ContextLength is the number of token slots of every released CLIP
// text encoder.
const ContextLength = 77

// maxOriginalMerges is how many merges of bpe_simple_vocab_16e6.txt the
// original SimpleTokenizer keeps (merges[1:49152-256-2+1]).
const maxOriginalMerges = 49152 - 256 - 2

const (
	startOfText = "<|startoftext|>"
	endOfText   = "<|endoftext|>"
	endOfWord   = "</w>"
)

// mergeRule is what BPE needs to know about one adjacent pair of symbols:
// its priority and the vocabulary id of the symbol it merges into.
type mergeRule struct {
	rank   int32
	result int32
}

// Tokenizer reproduces CLIP's SimpleTokenizer. It is safe for concurrent use.
type Tokenizer struct {
	// byteSymbol[b] is the id of the byte symbol of b inside a word,
	// byteSymbolEnd[b] the id of the same symbol ending a word ("</w>").
	byteSymbol    [256]int32
	byteSymbolEnd [256]int32
	// merges is keyed by pairKey(left id, right id).
	merges    map[uint64]mergeRule
	sot, eot  int32
	vocabSize int
	cache     *bpeCache
}

func pairKey(left, right int32) uint64 {
	return uint64(uint32(left))<<32 | uint64(uint32(right))
}

// SOT returns the id of <|startoftext|>.
func (t *Tokenizer) SOT() int32 { return t.sot }

// EOT returns the id of <|endoftext|>.
func (t *Tokenizer) EOT() int32 { return t.eot }

// VocabSize returns the number of vocabulary entries, which is the size the
// text encoder's token embedding must have.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// Encode returns the BPE ids of text without start/end tokens, exactly as
// SimpleTokenizer().encode(text) does.
func (t *Tokenizer) Encode(text string) []int32 {
	var ids []int32
	splitPieces(Clean(text), func(piece string) {
		ids = t.appendPiece(ids, piece)
	})
	return ids
}

// Tokenize returns exactly contextLength ids: SOT, the ids of text, EOT, then
// zeros, like clip.tokenize([text], context_length, truncate=True)[0]. When
// the text does not fit, it is cut and EOT takes the last slot; truncated
// then reports that the caller lost words (a warning, not an error).
// A contextLength below 1 means ContextLength.
func (t *Tokenizer) Tokenize(text string, contextLength int) (ids []int32, truncated bool) {
	if contextLength < 1 {
		contextLength = ContextLength
	}
	body := t.Encode(text)
	ids = make([]int32, contextLength)
	ids[0] = t.sot
	n := copy(ids[1:], body)
	if 1+len(body)+1 > contextLength {
		truncated = true
		ids[contextLength-1] = t.eot
		return ids, truncated
	}
	ids[1+n] = t.eot
	return ids, false
}

// appendPiece appends the ids of one piece produced by the split pattern.
func (t *Tokenizer) appendPiece(ids []int32, piece string) []int32 {
	// The original seeds its BPE cache with the two special tokens, so only
	// their exact spelling maps to the special ids.
	switch piece {
	case startOfText:
		return append(ids, t.sot)
	case endOfText:
		return append(ids, t.eot)
	}
	if cached, ok := t.cache.get(piece); ok {
		return append(ids, cached...)
	}
	word := t.bpe(piece)
	t.cache.put(piece, word)
	return append(ids, word...)
}

// bpe merges the byte symbols of piece, always taking the lowest-ranked
// adjacent pair and merging all its non-overlapping occurrences left to
// right, as SimpleTokenizer.bpe does.
func (t *Tokenizer) bpe(piece string) []int32 {
	word := make([]int32, len(piece))
	for i := 0; i < len(piece); i++ {
		word[i] = t.byteSymbol[piece[i]]
	}
	word[len(word)-1] = t.byteSymbolEnd[piece[len(piece)-1]]
	for len(word) > 1 {
		best := mergeRule{rank: -1}
		var bestLeft, bestRight int32
		for i := 0; i+1 < len(word); i++ {
			rule, ok := t.merges[pairKey(word[i], word[i+1])]
			if ok && (best.rank < 0 || rule.rank < best.rank) {
				best, bestLeft, bestRight = rule, word[i], word[i+1]
			}
		}
		if best.rank < 0 {
			break
		}
		out := word[:0]
		for i := 0; i < len(word); i++ {
			if i+1 < len(word) && word[i] == bestLeft && word[i+1] == bestRight {
				out = append(out, best.result)
				i++
				continue
			}
			out = append(out, word[i])
		}
		word = out
	}
	return word
}

// bpeCache remembers the ids of pieces already merged. Prompts repeat the
// same few hundred words, so this is where the speed comes from. It is
// bounded: when full it starts over rather than growing with hostile input.
type bpeCache struct {
	mu      sync.RWMutex
	entries map[string][]int32
	limit   int
}

// maxCachedPieceLen keeps pathological pieces (a megabyte of letters) from
// pinning memory; they are rare and merged on every use instead.
const maxCachedPieceLen = 128

func newBPECache(limit int) *bpeCache {
	return &bpeCache{entries: make(map[string][]int32), limit: limit}
}

func (c *bpeCache) get(piece string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.entries[piece]
	c.mu.RUnlock()
	return ids, ok
}

func (c *bpeCache) put(piece string, ids []int32) {
	if len(piece) > maxCachedPieceLen {
		return
	}
	c.mu.Lock()
	if len(c.entries) >= c.limit {
		c.entries = make(map[string][]int32)
	}
	c.entries[piece] = ids
	c.mu.Unlock()
}

func (c *bpeCache) reset() {
	c.mu.Lock()
	c.entries = make(map[string][]int32)
	c.mu.Unlock()
}

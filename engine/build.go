package engine

import (
	"errors"
	"fmt"
)

// TokenizeFunc turns one prompt into ContextLength token ids (the
// tokenizer package's Tokenize with ContextLength).
type TokenizeFunc func(prompt string) []int32

// BuildClassifier expands each label with templates (DefaultTemplate when
// none), encodes all prompts in batches of at most batch (0 means 64) and
// ensembles each label's prompt embeddings.
func BuildClassifier(enc TextEncoder, tokenize TokenizeFunc, labels, templates []string, scale float32, batch int) (*Classifier, error) {
	if enc == nil || tokenize == nil {
		return nil, errors.New("classifier: nil text encoder or tokenizer")
	}
	if batch <= 0 {
		batch = 64
	}
	var prompts []string
	owner := []int{} // owner[i] is the label index of prompts[i]
	for li, label := range labels {
		for _, p := range ExpandTemplates(label, templates) {
			prompts = append(prompts, p)
			owner = append(owner, li)
		}
	}
	perLabel := make([][][]float32, len(labels))
	for start := 0; start < len(prompts); start += batch {
		end := min(start+batch, len(prompts))
		tokens := make([][]int32, end-start)
		for i := range tokens {
			tokens[i] = tokenize(prompts[start+i])
			if len(tokens[i]) != ContextLength {
				return nil, fmt.Errorf("classifier: prompt %q tokenized to %d ids, expected %d", prompts[start+i], len(tokens[i]), ContextLength)
			}
		}
		emb, err := enc.EncodeTexts(tokens)
		if err != nil {
			return nil, fmt.Errorf("classifier: encoding prompts %d-%d: %w", start, end-1, err)
		}
		if len(emb) != len(tokens) {
			return nil, fmt.Errorf("classifier: encoder returned %d embeddings for %d prompts", len(emb), len(tokens))
		}
		for i, e := range emb {
			li := owner[start+i]
			perLabel[li] = append(perLabel[li], e)
		}
	}
	return NewClassifier(labels, perLabel, scale)
}

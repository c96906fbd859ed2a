// Package tokenizer reproduces OpenAI CLIP's SimpleTokenizer and
// clip.tokenize exactly.
package tokenizer

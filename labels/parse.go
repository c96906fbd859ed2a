// Package labels reads the hand-written label files that tell clipd what to
// look for, expands them into CLIP prompts, turns the prompts into zero-shot
// classifier weights through a PromptEncoder, and keeps them current while
// people edit the files (see Watcher). The file format is documented in
// docs/labels.md.
package labels

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/quote"
)

// DefaultTemplate is used when a file has no template: line.
const DefaultTemplate = engine.DefaultTemplate

// Placeholder marks where a template takes the class name.
const Placeholder = "{}"

// maxLineBytes bounds one line so that a binary file dropped into the labels
// directory by mistake gives an error instead of a huge allocation.
const maxLineBytes = 64 * 1024

// What one file may expand to. The encoder's time and the embeddings'
// memory follow the prompts, not the file's bytes: templates multiply
// names, so 20,000 templates and 200 labels, a 390 KB file, would ask
// for 4,000,000 prompts (hours of encoding, gigabytes of embeddings). The
// largest sets CLIP was evaluated with fit with room to spare: ImageNet,
// 1,000 classes × 80 templates = 80,000 prompts; CIFAR-100, 100 × 18.
const (
	// MaxTemplates bounds a file's distinct template: lines.
	MaxTemplates = 256
	// MaxPrompts bounds a file's prompts, counted as written: every name
	// and synonym in every template, plus every per-label prompt, before
	// repeats within a label are dropped.
	MaxPrompts = 100_000
	// MaxPromptTextBytes bounds the text of those prompts together, so
	// that a few long templates cannot stand in for many: 80,000 ImageNet
	// prompts are about 4 MB.
	MaxPromptTextBytes = 32 << 20
)

// Label is one class the classifier can answer.
type Label struct {
	// Name is what results report.
	Name string
	// Prompts are the sentences whose embeddings are averaged into Weight.
	Prompts []string
	// Line is where the label was written, for error messages.
	Line int
	// Weight is the ensembled, L2-normalized text embedding; nil until the
	// set has been embedded (Embedder.Embed or Watcher).
	Weight []float32
}

// Set is the parsed content of one labels file.
type Set struct {
	// File is the name given to Parse, used in error messages.
	File string
	// Version increases by one each time the Watcher swaps in a new set for
	// the same file; Parse leaves it zero.
	Version uint64
	// Templates are the file's template: lines, or DefaultTemplate.
	Templates []string
	Labels    []Label

	// clf scores image embeddings against the labels; built once by
	// Embedder.Embed, so that every frame, socket request and CLI run
	// scores the same way.
	clf *engine.Classifier
}

// Names lists the label names in file order, the order scores are reported in.
func (s *Set) Names() []string {
	names := make([]string, len(s.Labels))
	for i, l := range s.Labels {
		names[i] = l.Name
	}
	return names
}

// Prompts lists every distinct prompt of the set, in first-use order.
func (s *Set) Prompts() []string {
	seen := make(map[string]bool)
	var out []string
	for _, l := range s.Labels {
		for _, p := range l.Prompts {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// Weights lists the label weights in label order, the rows of the zero-shot
// classifier (for engine.NewClassifier, each as a one-prompt ensemble).
func (s *Set) Weights() [][]float32 {
	w := make([][]float32, len(s.Labels))
	for i, l := range s.Labels {
		w[i] = l.Weight
	}
	return w
}

// Classifier is the zero-shot classifier of the embedded set (nil before
// Embed).
func (s *Set) Classifier() *engine.Classifier { return s.clf }

// Scores returns CLIP's zero-shot probabilities of every label, in label
// order, for an image embedding.
func (s *Set) Scores(image []float32) ([]float32, error) {
	if s.clf == nil {
		return nil, fmt.Errorf("%s: labels not embedded", s.File)
	}
	return s.clf.Scores(image)
}

// Top returns the k most probable labels for an image embedding, best
// first (k <= 0: all). An embedding that is not finite (a model producing
// NaN) is an error, never a result.
func (s *Set) Top(image []float32, k int) ([]engine.Match, error) {
	scores, err := s.Scores(image)
	if err != nil {
		return nil, err
	}
	return engine.TopK(scores, s.clf.Labels, k), nil
}

// Embedded reports whether every label carries a weight.
func (s *Set) Embedded() bool {
	for _, l := range s.Labels {
		if l.Weight == nil {
			return false
		}
	}
	return len(s.Labels) > 0
}

// ParseError locates a problem in a labels file.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// directives are the keys that a "key: value" line reserves. Everything else
// before a ':' is a label name.
var directives = map[string]bool{"template": true}

// pendingLabel keeps the class names of a label until all templates are
// known, because template: lines apply to the whole file wherever they are.
type pendingLabel struct {
	name     string
	line     int
	synonyms []string // names put into templates; nil when prompts are explicit
	prompts  []string // explicit prompts
}

// size is how many prompts the label expands to with templates, and their
// bytes, without expanding: the bound must hold before the memory is spent.
func (p pendingLabel) size(templates []string) (n, bytes int) {
	if p.synonyms == nil {
		for _, s := range p.prompts {
			bytes += len(s)
		}
		return len(p.prompts), bytes
	}
	tmplBytes, holes := 0, 0
	for _, t := range templates {
		tmplBytes += len(t)
		holes += strings.Count(t, Placeholder)
	}
	for _, s := range p.synonyms {
		bytes += tmplBytes + holes*(len(s)-len(Placeholder))
	}
	return len(p.synonyms) * len(templates), bytes
}

// Parse reads a labels file. name is only used in error messages. Errors are
// *ParseError values naming the file and line.
func Parse(r io.Reader, name string) (*Set, error) {
	set := &Set{File: name}
	var pending []pendingLabel
	firstLine := make(map[string]int) // lower-cased name -> line, for duplicates
	templateSeen := make(map[string]bool)
	// atLeast counts what the labels so far expand to with the templates
	// so far: a lower bound, since a later template: line adds to every
	// label, which is enough to stop a file of a million labels early.
	atLeast := 0
	fail := func(line int, format string, args ...any) error {
		return &ParseError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		raw := sc.Text()
		if lineNo == 1 {
			// Windows editors start UTF-8 files with a byte-order mark;
			// it is not part of the first label.
			raw = strings.TrimPrefix(raw, "\uFEFF")
		}
		if !utf8.ValidString(raw) {
			return nil, fail(lineNo, "not valid UTF-8")
		}
		if col, r, found := controlChar(raw); found {
			return nil, fail(lineNo, "column %d: control character %U (a binary file, or an editor's stray byte?)", col, r)
		}
		text := raw
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}

		colon := strings.IndexByte(text, ':')
		equals := strings.IndexByte(text, '=')
		switch {
		case colon >= 0 && (equals < 0 || colon < equals):
			key := strings.TrimSpace(text[:colon])
			value := strings.TrimSpace(text[colon+1:])
			if directives[key] {
				if err := checkTemplate(value); err != nil {
					return nil, fail(lineNo, "%v", err)
				}
				if !templateSeen[value] {
					if len(set.Templates) == MaxTemplates {
						return nil, fail(lineNo, "more than %d templates (CLIP's ImageNet set has 80)", MaxTemplates)
					}
					templateSeen[value] = true
					set.Templates = append(set.Templates, value)
				}
				continue
			}
			prompts, err := splitList(value, '|')
			if err != nil {
				return nil, fail(lineNo, "label %s: %v after ':'", quoted(key), err)
			}
			for _, p := range prompts {
				if strings.Contains(p, Placeholder) {
					if isWord(key) {
						return nil, fail(lineNo, "unknown directive %s (the only directive is \"template:\"; per-label prompts after ':' are complete sentences and may not contain {})", quoted(key))
					}
					return nil, fail(lineNo, "label %s: prompt %s contains {}: per-label prompts after ':' are complete sentences, {} belongs in template: lines", quoted(key), quoted(p))
				}
			}
			if err := checkName(key); err != nil {
				return nil, fail(lineNo, "%v", err)
			}
			pending = append(pending, pendingLabel{name: key, line: lineNo, prompts: prompts})
		case equals >= 0:
			key := strings.TrimSpace(text[:equals])
			if err := checkName(key); err != nil {
				return nil, fail(lineNo, "%v", err)
			}
			synonyms, err := splitList(text[equals+1:], ',')
			if err != nil {
				return nil, fail(lineNo, "label %s: %v after '='", quoted(key), err)
			}
			for _, s := range synonyms {
				if strings.ContainsAny(s, ":=|") {
					return nil, fail(lineNo, "label %s: synonym %s contains ':', '=' or '|': a label line takes either '= synonyms' or ': prompts', not both", quoted(key), quoted(s))
				}
				if strings.ContainsAny(s, "{}") {
					return nil, fail(lineNo, "label %s: synonym %s contains '{' or '}': synonyms are names put into the templates", quoted(key), quoted(s))
				}
			}
			pending = append(pending, pendingLabel{name: key, line: lineNo, synonyms: append([]string{key}, synonyms...)})
		default:
			if err := checkName(text); err != nil {
				return nil, fail(lineNo, "%v", err)
			}
			pending = append(pending, pendingLabel{name: text, line: lineNo, synonyms: []string{text}})
		}

		last := pending[len(pending)-1]
		folded := strings.ToLower(last.name)
		if prev, dup := firstLine[folded]; dup {
			return nil, fail(lineNo, "duplicate label %s (first defined on line %d)", quoted(last.name), prev)
		}
		firstLine[folded] = lineNo
		n, _ := last.size(set.Templates)
		if atLeast += max(n, len(last.synonyms)); atLeast > MaxPrompts {
			return nil, fail(lineNo, "%s", tooManyPrompts(last.name, max(len(set.Templates), 1)))
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fail(lineNo+1, "line longer than %d bytes", maxLineBytes)
		}
		return nil, &ParseError{File: name, Msg: err.Error()}
	}
	if len(pending) == 0 {
		return nil, fail(0, "no labels (a labels file needs at least one label line)")
	}
	if len(set.Templates) == 0 {
		set.Templates = []string{DefaultTemplate}
	}
	total, totalBytes := 0, 0
	for _, p := range pending {
		n, b := p.size(set.Templates)
		total, totalBytes = total+n, totalBytes+b
		switch {
		case total > MaxPrompts:
			return nil, fail(p.line, "%s", tooManyPrompts(p.name, len(set.Templates)))
		case totalBytes > MaxPromptTextBytes:
			return nil, fail(p.line, "label %s takes the file's prompts past %d MiB of text (every name and synonym in each of %d templates, plus per-label prompts)",
				quoted(p.name), MaxPromptTextBytes>>20, len(set.Templates))
		}
	}

	set.Labels = make([]Label, len(pending))
	for i, p := range pending {
		prompts := p.prompts
		if p.synonyms != nil {
			prompts = expand(set.Templates, p.synonyms)
		}
		set.Labels[i] = Label{Name: p.name, Line: p.line, Prompts: dedupe(prompts)}
	}
	return set, nil
}

func tooManyPrompts(label string, templates int) string {
	return fmt.Sprintf("label %s takes the file past %d prompts (every name and synonym in each of %d templates, plus per-label prompts); split the file or use fewer templates",
		quoted(label), MaxPrompts, templates)
}

// FromNames builds a set from bare label names, as a classify request over the
// socket supplies them. templates may be nil for DefaultTemplate.
func FromNames(names []string, templates []string) (*Set, error) {
	var b strings.Builder
	for _, t := range templates {
		fmt.Fprintf(&b, "template: %s\n", t)
	}
	for _, n := range names {
		if strings.ContainsAny(n, "\n\r#:=|") {
			return nil, fmt.Errorf("label %s: may not contain newlines or any of # : = |", quoted(n))
		}
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return Parse(strings.NewReader(b.String()), "request")
}

// expand puts every class name into every template, templates outermost so
// that the prompt list reads like CLIP's zeroshot_classifier loop.
func expand(templates, names []string) []string {
	out := make([]string, 0, len(templates)*len(names))
	for _, n := range names {
		for _, t := range templates {
			out = append(out, strings.ReplaceAll(t, Placeholder, n))
		}
	}
	return out
}

func checkTemplate(t string) error {
	switch {
	case t == "":
		return errors.New("empty template")
	case !strings.Contains(t, Placeholder):
		return fmt.Errorf("template %s has no {} where the label goes", quoted(t))
	case strings.ContainsAny(t, "|"):
		return fmt.Errorf("template %s contains '|': write one template: line per template", quoted(t))
	}
	return nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty label name")
	case strings.Contains(name, "|"):
		return fmt.Errorf("label %s contains '|': alternatives go after ':' (prompts) or '=' (synonyms)", quoted(name))
	case strings.ContainsAny(name, "={}"):
		return fmt.Errorf("label %s may not contain '=', '{' or '}'", quoted(name))
	}
	return nil
}

// splitList splits on sep, trims items and rejects empty ones, which are
// almost always a stray separator.
func splitList(s string, sep byte) ([]string, error) {
	parts := strings.Split(s, string(sep))
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			if len(parts) == 1 {
				return nil, errors.New("nothing")
			}
			return nil, fmt.Errorf("an empty item between '%c' separators", sep)
		}
		out = append(out, p)
	}
	return out, nil
}

// controlChar finds the first character that has no place in a labels
// file (C0 and C1 controls other than tab, DEL, and a byte-order mark past
// the start), with its 1-based column in characters.
func controlChar(line string) (col int, r rune, found bool) {
	for _, r := range line {
		col++
		if (r < 0x20 && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == '\uFEFF' {
			return col, r, true
		}
	}
	return 0, 0, false
}

// quoted is how errors show a name, template or prompt: escaped and cut
// to a few dozen bytes, since a label may have come from a socket client
// (FromNames) and a file's line may be 64 KiB; the error's file:line says
// where the rest is.
func quoted(s string) string { return quote.Bounded(s) }

// isWord reports whether s looks like a directive keyword, so that a typo
// such as "templte: a photo of a {}." is reported as what it most likely is.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' && r != '-' {
			return false
		}
	}
	return true
}

// dedupe drops repeated prompts: a synonym that equals the label would
// otherwise count twice in the ensemble mean.
func dedupe(prompts []string) []string {
	seen := make(map[string]bool, len(prompts))
	out := prompts[:0:0]
	for _, p := range prompts {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

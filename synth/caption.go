package synth

import (
	"fmt"
	"sort"
	"strings"
)

// BackgroundWords are the adjectives captions use for each background kind.
var BackgroundWords = map[string]string{
	"plain": "plain", "gradient": "gradient", "noise": "noisy", "clutter": "cluttered",
}

// EvalTemplates are the prompt templates of the zero-shot evaluation. No
// training caption is built from them (TestCaptionsAvoidEvalTemplates), so
// the evaluation measures transfer to new wording, as CLIP's did.
var EvalTemplates = []string{
	"a photo of one {}.",
	"one {} in the image.",
	"the {}.",
}

var numberWords = []string{"no", "one", "two", "three", "four", "five"}

// Captions returns several true descriptions of a scene in varied wording,
// for contrastive training (the trainer picks one per step). The choice of
// templates depends on seed only, so a dataset is reproducible.
func Captions(t Truth, seed uint64) []string {
	r := newRNG(seed, 11)
	bg := BackgroundWords[t.Background]
	var out []string
	if len(t.Shapes) == 1 {
		s := t.Shapes[0]
		cs := s.Color + " " + s.Kind
		pos := s.Position()
		at := "at the " + pos
		if pos == "center" {
			at = "in the center"
		}
		pool := []string{
			"a photo of " + a(cs) + ".",
			a(cs),
			"a " + s.Size + " " + cs + ".",
			a(cs) + " on a " + bg + " background.",
			"a " + s.Size + " " + cs + " " + at + ".",
			"a picture of " + a(cs) + ".",
			"a photo of a " + s.Size + " " + cs + " on a " + bg + " background.",
			"one " + cs + ".",
			a(cs) + " " + at + " of the image.",
			"a drawing of " + a(cs) + ".",
		}
		out = pick(pool, 4, &r)
		// Partial descriptions teach colour and shape words on their own.
		out = append(out, a(s.Color)+" shape.", "a "+s.Kind+" on a "+bg+" background.")
		return out
	}
	// Group equal colour×shape pairs so counts read naturally.
	counts := map[Pair]int{}
	for _, s := range t.Shapes {
		counts[Pair{s.Color, s.Kind}]++
	}
	pairs := make([]Pair, 0, len(counts))
	for p := range counts {
		pairs = append(pairs, p)
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].String() < pairs[j].String() })
	// Shuffle the mention order so no position in the caption is special.
	for i := len(pairs) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		pairs[i], pairs[j] = pairs[j], pairs[i]
	}
	var phrases, numbered []string
	for _, p := range pairs {
		n := counts[p]
		if n == 1 {
			phrases = append(phrases, a(p.String()))
		} else {
			phrases = append(phrases, fmt.Sprintf("%s %s %s", numberWords[min(n, 5)], p.Color, plural(p.Kind)))
		}
		numbered = append(numbered, fmt.Sprintf("%s %s %s", numberWords[min(n, 5)], p.Color, pluralN(p.Kind, n)))
	}
	list := joinAnd(phrases)
	pool := []string{
		list + ".",
		"a photo of " + list + ".",
		list + " on a " + bg + " background.",
		"a picture of " + joinAnd(numbered) + ".",
		fmt.Sprintf("%s shapes: %s.", numberWords[min(len(t.Shapes), 5)], list),
	}
	return pick(pool, 3, &r)
}

func plural(kind string) string {
	if kind == "cross" {
		return "crosses"
	}
	return kind + "s"
}

func pluralN(kind string, n int) string {
	if n == 1 {
		return kind
	}
	return plural(kind)
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// pick returns n distinct entries of pool in random order.
func pick(pool []string, n int, r *rng) []string {
	idx := make([]int, len(pool))
	for i := range idx {
		idx[i] = i
	}
	out := make([]string, 0, n)
	for i := 0; i < n && i < len(pool); i++ {
		j := i + r.intn(len(pool)-i)
		idx[i], idx[j] = idx[j], idx[i]
		out = append(out, pool[idx[i]])
	}
	return out
}

// a prefixes the indefinite article ("an orange star", "a red star").
func a(phrase string) string {
	if phrase != "" && strings.ContainsRune("aeiou", rune(phrase[0])) {
		return "an " + phrase
	}
	return "a " + phrase
}

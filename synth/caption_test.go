package synth

import (
	"strings"
	"testing"
)

func TestCaptionsAreTrue(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		_, truth := Render(seed, Options{Width: 64, Height: 64})
		caps := Captions(truth, seed)
		if len(caps) < 3 {
			t.Fatalf("seed %d: only %d captions", seed, len(caps))
		}
		for _, c := range caps {
			// Every colour word in a caption belongs to a drawn shape, and
			// every drawn colour is mentioned unless the caption is about
			// the shape alone.
			for _, col := range ColorNames {
				mentioned := false
				for _, w := range strings.FieldsFunc(c, func(r rune) bool { return r == ' ' || r == ',' || r == '.' || r == ':' }) {
					mentioned = mentioned || w == col
				}
				present := truth.Count(col, "") > 0
				if mentioned && !present {
					t.Fatalf("seed %d: caption %q mentions %s, truth %+v", seed, c, col, truth.Shapes)
				}
			}
			if len(truth.Shapes) > 1 {
				for _, s := range truth.Shapes {
					if !strings.Contains(c, s.Color+" "+s.Kind) {
						t.Fatalf("seed %d: caption %q omits the %s %s", seed, c, s.Color, s.Kind)
					}
				}
			}
		}
	}
}

func TestCaptionsCountRepeatedPairs(t *testing.T) {
	truth := Truth{Background: "noise", Shapes: []Shape{
		{Kind: "square", Color: "blue"}, {Kind: "square", Color: "blue"}, {Kind: "cross", Color: "red"},
	}}
	all := strings.Join(Captions(truth, 1), "|")
	if !strings.Contains(all, "two blue squares") {
		t.Fatalf("captions %q do not count the two blue squares", all)
	}
}

func TestCaptionsAvoidEvalTemplates(t *testing.T) {
	var prompts []string
	for _, p := range AllPairs() {
		for _, tmpl := range EvalTemplates {
			prompts = append(prompts, strings.ReplaceAll(tmpl, "{}", p.String()))
		}
	}
	for seed := uint64(0); seed < 2000; seed++ {
		_, truth := Render(seed, Options{Width: 32, Height: 32, MaxShapes: 1})
		for _, c := range Captions(truth, seed) {
			for _, p := range prompts {
				if c == p {
					t.Fatalf("seed %d: training caption %q equals an evaluation prompt", seed, c)
				}
			}
		}
	}
}

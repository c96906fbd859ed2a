package trt

import (
	"math"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	ref := []float32{0.3, -0.2, 0.9, 0.1}
	near := []float32{0.3001, -0.2002, 0.8995, 0.1003}
	// Rotated about 3 degrees in the first two coordinates: cosine ~0.9986.
	rot := rotate(ref, 0.055)

	v := Decide(Visual, []Probe{{"gradient", near, ref}, {"noise", ref, ref}}, 0)
	if !v.Accept || v.Reason != "" || len(v.Cosines) != 2 || v.Worst != "gradient" || v.WorstCosine < 0.999999 {
		t.Errorf("near-identical embeddings: %+v", v)
	}

	v = Decide(Textual, []Probe{{"cat", ref, ref}, {"long prompt", rot, ref}, {"snow", near, ref}}, 0)
	c := cos(rot, ref)
	if c >= MinCosine || c < 0.99 {
		t.Fatalf("test vector cosine %.6f is not just below the threshold", c)
	}
	if v.Accept || v.Worst != "long prompt" || math.Abs(v.WorstCosine-c) > 1e-9 {
		t.Errorf("rotated probe: %+v", v)
	}
	if !strings.Contains(v.Reason, `probe "long prompt"`) || !strings.Contains(v.Reason, "textual encoder") ||
		!strings.Contains(v.Reason, "0.99") {
		t.Errorf("reason %q does not name probe and cosine", v.Reason)
	}
	if len(v.Cosines) != 3 {
		t.Errorf("cosines of all probes wanted, got %v", v.Cosines)
	}

	// A looser threshold accepts the same numbers.
	if v := Decide(Textual, []Probe{{"long prompt", rot, ref}}, 0.99); !v.Accept {
		t.Errorf("threshold 0.99: %+v", v)
	}

	for name, probes := range map[string][]Probe{
		"no probes":  nil,
		"length":     {{"p", ref[:3], ref}},
		"zero":       {{"p", make([]float32, 4), ref}},
		"nan":        {{"p", []float32{float32(math.NaN()), 0, 0, 1}, ref}},
		"opposite":   {{"p", neg(ref), ref}},
		"empty both": {{"p", nil, nil}},
	} {
		if v := Decide(Visual, probes, 0); v.Accept || v.Reason == "" {
			t.Errorf("%s accepted: %+v", name, v)
		}
	}
}

func rotate(v []float32, angle float64) []float32 {
	out := append([]float32(nil), v...)
	s, c := math.Sincos(angle)
	out[0] = float32(c*float64(v[0]) - s*float64(v[2]))
	out[2] = float32(s*float64(v[0]) + c*float64(v[2]))
	return out
}

func neg(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = -x
	}
	return out
}

func cos(a, b []float32) float64 {
	c, _ := cosine(a, b)
	return c
}

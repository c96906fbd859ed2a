package trt

import (
	"fmt"
	"math"
)

// MinCosine is the least cosine similarity between an FP16 engine's
// embedding and the FP32 ONNX Runtime embedding of the same probe that
// clipd accepts. Zero-shot rankings of CLIP are stable well above it; a
// LayerNorm overflow or a broken pooling drops far below.
const MinCosine = 0.999

// Probe is one input run through both paths.
type Probe struct {
	Name string
	// Got is the candidate's embedding (TensorRT), Want the reference's.
	Got, Want []float32
}

// Verdict is the accuracy guard's decision for one encoder.
type Verdict struct {
	Encoder string
	Accept  bool
	// Cosines has one value per probe, in probe order.
	Cosines []float64
	// Worst names the probe with the lowest cosine and its value.
	Worst       string
	WorstCosine float64
	// Reason explains a refusal in one sentence; empty when accepted.
	Reason string
}

// Decide accepts an encoder when every probe's cosine is at least min
// (MinCosine when min is 0). A probe with mismatched lengths, no values,
// or a non-finite cosine is a refusal, never a pass.
func Decide(encoder string, probes []Probe, min float64) Verdict {
	if min == 0 {
		min = MinCosine
	}
	v := Verdict{Encoder: encoder, Accept: true, WorstCosine: math.Inf(1)}
	if len(probes) == 0 {
		v.Accept = false
		v.WorstCosine = math.NaN()
		v.Reason = fmt.Sprintf("%s encoder: no probes were run, so its accuracy is unknown", encoder)
		return v
	}
	for _, p := range probes {
		c, err := cosine(p.Got, p.Want)
		v.Cosines = append(v.Cosines, c)
		if err != nil {
			if v.Accept {
				v.Accept = false
				v.Worst, v.WorstCosine = p.Name, c
				v.Reason = fmt.Sprintf("%s encoder: probe %q: %v", encoder, p.Name, err)
			}
			continue
		}
		if c < v.WorstCosine && v.Accept {
			v.Worst, v.WorstCosine = p.Name, c
		}
		if c < min && v.Accept {
			v.Accept = false
			v.Worst, v.WorstCosine = p.Name, c
			v.Reason = fmt.Sprintf("%s encoder: probe %q has cosine %.6f to the FP32 reference, below %.4f",
				encoder, p.Name, c, min)
		}
	}
	return v
}

func cosine(a, b []float32) (float64, error) {
	if len(a) != len(b) {
		return math.NaN(), fmt.Errorf("embedding has %d values, the reference %d", len(a), len(b))
	}
	if len(a) == 0 {
		return math.NaN(), fmt.Errorf("empty embedding")
	}
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	c := dot / math.Sqrt(na*nb)
	if math.IsNaN(c) || math.IsInf(c, 0) {
		return math.NaN(), fmt.Errorf("cosine is not finite (zero or non-finite embedding)")
	}
	return c, nil
}

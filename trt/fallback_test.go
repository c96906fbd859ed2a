package trt

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/clipd/clipd/engine/onnxrt"
	"github.com/clipd/clipd/internal/testmodel"
)

// When the guard refuses one engine, the reference keeps only the tower
// that runs on it: the text session the guard opened is closed when the
// text engine was accepted, the visual session when the visual engine
// was; with both accepted the reference goes. The refused encoder still
// answers through the reference.
func TestVerdictsCloseWhatTheReferenceNoLongerServes(t *testing.T) {
	ortOptions(t)
	dir := testmodel.TinyBundle(t, "state")
	log := slog.New(slog.DiscardHandler)
	accept := func(name string) Verdict { return Verdict{Encoder: name, Accept: true} }
	refuse := func(name string) Verdict { return Verdict{Encoder: name, Reason: "probe cosine 0.9"} }
	setup := func(t *testing.T) (*Encoder, *onnxrt.Encoder, [][]int32) {
		b, ref := openORT(t, dir)
		probes := probesFor(t, b)
		tokens := make([][]int32, len(probes))
		for i, p := range probes {
			tokens[i] = p.Tokens
		}
		// What the guard did: both towers of the reference ran.
		if _, err := ref.EncodeTexts(tokens); err != nil {
			t.Fatal(err)
		}
		e := &Encoder{bundle: b, imageSize: b.ImageSize(), embedDim: b.EmbedDim(), reference: ref,
			visual: &tower{name: Visual, engine: &Engine{}}, text: &tower{name: Textual, engine: &Engine{}}}
		return e, ref, tokens
	}
	pixels := ImageProbes(224)[0].Pixels

	t.Run("visual refused", func(t *testing.T) {
		e, ref, _ := setup(t)
		e.applyVerdicts(refuse(Visual), accept(Textual), log)
		if e.reference != ref || ref.TextLoaded() {
			t.Fatalf("reference kept %v, its text session open %v", e.reference != nil, ref.TextLoaded())
		}
		want, err := ref.EncodeImages(pixels, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.EncodeImages(pixels, 1)
		if err != nil || !sameFloats(got[0], want[0]) {
			t.Fatalf("images through the fallback: %v", err)
		}
		if e.Backend() != "tensorrt (visual on onnxruntime)" || e.visual.engine != nil {
			t.Errorf("backend %q, refused engine kept %v", e.Backend(), e.visual.engine != nil)
		}
	})
	t.Run("text refused", func(t *testing.T) {
		e, ref, tokens := setup(t)
		e.applyVerdicts(accept(Visual), refuse(Textual), log)
		if _, err := ref.EncodeImages(pixels, 1); !errors.Is(err, onnxrt.ErrImagesClosed) {
			t.Fatalf("the reference's visual session is still open: %v", err)
		}
		if _, err := e.EncodeTexts(tokens); err != nil {
			t.Fatalf("text through the fallback: %v", err)
		}
		if e.Backend() != "tensorrt (textual on onnxruntime)" {
			t.Errorf("backend %q", e.Backend())
		}
	})
	t.Run("both accepted", func(t *testing.T) {
		e, ref, tokens := setup(t)
		e.applyVerdicts(accept(Visual), accept(Textual), log)
		if e.reference != nil {
			t.Fatal("reference kept")
		}
		if _, err := ref.EncodeTexts(tokens); !errors.Is(err, onnxrt.ErrClosed) {
			t.Fatalf("reference not closed: %v", err)
		}
	})
}

func sameFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

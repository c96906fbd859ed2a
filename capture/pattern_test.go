package capture

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/synth"
)

func TestPatternFramesCarryTheirTruth(t *testing.T) {
	const fps, hold, seed = 50, 3, 1000
	s, err := Open(Config{Source: "pattern?hold=3&seed=1000", Width: 96, Height: 64, FPS: fps}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	got := nextFrames(t, s, 12)
	elapsed := time.Since(start)
	for _, f := range got {
		if f.Format != frame.RGB24 || f.Width != 96 || f.Height != 64 || len(f.Data) != 96*64*3 {
			t.Fatalf("frame %d: %v %dx%d %d bytes", f.Seq, f.Format, f.Width, f.Height, len(f.Data))
		}
		wantSeed := uint64(seed) + (f.Seq-1)/hold
		wantPix, wantTruth := synth.Render(wantSeed, synth.Options{Width: 96, Height: 64})
		truth, ok := f.Meta.(synth.Truth)
		if !ok {
			t.Fatalf("frame %d Meta is %T, want synth.Truth", f.Seq, f.Meta)
		}
		if !reflect.DeepEqual(truth, wantTruth) {
			t.Errorf("frame %d truth %+v, want scene %d's %+v", f.Seq, truth, wantSeed, wantTruth)
		}
		if !reflect.DeepEqual(f.Data, wantPix) {
			t.Errorf("frame %d pixels differ from synth.Render(%d)", f.Seq, wantSeed)
		}
	}
	// A ticker never fires early, so 12 frames take at least 11 periods;
	// an unthrottled source would be far quicker.
	if min := 11 * time.Second / fps; elapsed < min {
		t.Errorf("12 frames at %d fps came in %v, want at least %v", fps, elapsed, min)
	}
	st := s.Stats()
	if st.Captured < 12 || st.Format != frame.RGB24 || st.Width != 96 {
		t.Errorf("stats %+v", st)
	}
}

func TestPatternScenesChangeEveryFrameByDefault(t *testing.T) {
	s, err := Open(Config{Source: "pattern", Width: 64, Height: 48, FPS: 100, Seed: 5}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := nextFrames(t, s, 4)
	for _, f := range got {
		_, want := synth.Render(5+f.Seq-1, synth.Options{Width: 64, Height: 48})
		if !reflect.DeepEqual(f.Meta, want) {
			t.Errorf("frame %d is not scene %d", f.Seq, 5+f.Seq-1)
		}
	}
}

func TestPatternOptionsAreValidated(t *testing.T) {
	_, err := Open(Config{Source: "pattern", Pattern: synth.Options{Backgrounds: []string{"plaid?"}}}, testLogger(t))
	if err == nil {
		t.Fatal("an unknown background was accepted")
	}
}

func TestPatternShapesOption(t *testing.T) {
	s, err := Open(Config{Source: "pattern?shapes=1&seed=40", Width: 64, Height: 64, FPS: 100}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, f := range nextFrames(t, s, 6) {
		truth := f.Meta.(synth.Truth)
		if len(truth.Shapes) != 1 {
			t.Errorf("frame %d has %d shapes with shapes=1", f.Seq, len(truth.Shapes))
		}
		_, want := synth.Render(40+f.Seq-1, synth.Options{Width: 64, Height: 64, MinShapes: 1, MaxShapes: 1})
		if !reflect.DeepEqual(truth, want) {
			t.Errorf("frame %d is not scene %d with one shape", f.Seq, 40+f.Seq-1)
		}
	}
	if _, err := Open(Config{Source: "pattern?shapes=0"}, testLogger(t)); err == nil || !strings.Contains(err.Error(), `shapes="0"`) {
		t.Errorf("shapes=0: %v", err)
	}
}

package capture

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/synth"
)

const (
	defaultPatternWidth, defaultPatternHeight = 640, 480
	defaultPatternFPS                         = 10
)

// patternSource is the synthetic camera: RGB24 scenes from package synth
// at a steady rate, each frame's synth.Truth in Frame.Meta. Frame seq n
// shows scene Seed + (n-1)/Hold, so a test can re-render any frame.
type patternSource struct {
	runner
	cfg  Config
	log  *slog.Logger
	opts synth.Options
	hold uint64
}

func newPatternSource(cfg Config, log *slog.Logger) (*patternSource, error) {
	opts := cfg.Pattern
	opts.Width, opts.Height = cfg.Width, cfg.Height
	if opts.Width == 0 {
		opts.Width, opts.Height = defaultPatternWidth, defaultPatternHeight
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("capture %s: pattern: %w", cfg.Name, err)
	}
	if cfg.FPS == 0 {
		cfg.FPS = defaultPatternFPS
	}
	s := &patternSource{runner: newRunner(), cfg: cfg, log: log.With("kind", "pattern"), opts: opts, hold: uint64(max(cfg.Hold, 1))}
	s.box.setFormat(frame.RGB24, opts.Width, opts.Height)
	s.start(s.run)
	return s, nil
}

// sceneSeed is the synth seed of frame seq.
func (s *patternSource) sceneSeed(seq uint64) uint64 {
	return s.cfg.Seed + (seq-1)/s.hold
}

func (s *patternSource) run() {
	tick := time.NewTicker(time.Second / time.Duration(s.cfg.FPS))
	defer tick.Stop()
	size := s.opts.Width * s.opts.Height * 3
	var (
		scene     []byte // the current scene, rendered once per Hold frames
		truth     synth.Truth
		sceneNo   uint64
		haveScene bool
		spare     []byte
		seq       uint64
	)
	for {
		select {
		case <-s.done:
			return
		case now := <-tick.C:
			seq++
			if seed := s.sceneSeed(seq); !haveScene || seed != sceneNo {
				if scene == nil {
					scene = make([]byte, size)
				}
				truth = synth.RenderInto(scene, seed, s.opts)
				sceneNo, haveScene = seed, true
			}
			buf := spare
			spare = nil
			if len(buf) != size {
				buf = make([]byte, size)
			}
			copy(buf, scene)
			f := &frame.Frame{Format: frame.RGB24, Width: s.opts.Width, Height: s.opts.Height, Data: buf, Seq: seq, Time: now, Meta: truth}
			if old := s.box.put(f); old != nil {
				spare = old.Data
			}
		}
	}
}

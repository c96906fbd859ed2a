package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/lifecycle"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/server"
)

// camera runs one [[camera]]: capture → rate limit → preprocess → encode
// (through the shared batcher) → score → publish. Capture runs in the
// source's own goroutine and keeps only the newest frame, so a slow
// pipeline never slows capture; this loop just takes whatever is newest.
//
// Its lifecycle serves reloads: prepareCamera makes one without a source,
// start runs it on a source, halt stops the loop and hands the source
// back (to be reused by a successor with the same source settings, or
// closed), release closes what is left.
type camera struct {
	conf    config.Camera
	log     *slog.Logger
	watcher *labels.Watcher
	pre     *preprocess.Preprocessor
	batcher *batcher
	publish func(server.Event)

	classified atomic.Uint64
	skipped    atomic.Uint64 // frames not classified because of classify_every
	badFrames  atomic.Uint64 // frames preprocessing rejected
	belowThr   atomic.Uint64
	nonFinite  atomic.Uint64 // frames whose embedding could not be scored
	// badFrameReports and nonFiniteReports space the error reports of bad
	// frames and of unusable embeddings.
	badFrameReports, nonFiniteReports limiter
	// preprocessingSince is the UnixNano when preprocessing of the current
	// frame began, 0 when not preprocessing; the watchdog reads it (the
	// batcher watches the encoder).
	preprocessingSince atomic.Int64

	mu        sync.Mutex
	source    capture.Source // nil while halted
	latencies map[string]*window
	rate      rateMeter

	loop *lifecycle.Loop // nil while halted

	health health
}

// start runs the camera's loop on src.
func (c *camera) start(src capture.Source) {
	c.mu.Lock()
	c.source = src
	c.mu.Unlock()
	c.loop = lifecycle.Go(func(ctx context.Context) { c.run(ctx, src) })
}

// halt stops the loop and returns its source, still open; nil if the
// camera was not running.
func (c *camera) halt() capture.Source {
	if c.loop == nil {
		return nil
	}
	c.loop.Close()
	c.loop = nil
	c.mu.Lock()
	src := c.source
	c.source = nil
	c.mu.Unlock()
	return src
}

// release closes the watcher and the preprocessor of a halted camera.
func (c *camera) release() {
	c.watcher.Close()
	c.pre.Close()
}

// close stops the camera and releases everything, waiting for each part.
func (c *camera) close() {
	if src := c.halt(); src != nil {
		src.Close()
	}
	c.release()
}

// prepared is a frame that has been preprocessed and waits for the encoder.
type prepared struct {
	frame  *frame.Frame
	tensor []float32
	taken  time.Time // when the frame was taken from the source
	ready  time.Time // when preprocessing finished
}

// run preprocesses the next frame while the previous one is being encoded:
// two tensors circulate between the preprocessing loop and the encoding
// loop, so the encoder never waits for preprocessing. A frame waits at most
// one encoder call; the source keeps only the newest frame meanwhile.
func (c *camera) run(ctx context.Context, src capture.Source) {
	ctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	free := make(chan []float32, 2)
	for range cap(free) {
		free <- make([]float32, c.pre.TensorLen())
	}
	ready := make(chan prepared)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.watchSource(ctx, src)
	}()
	go func() {
		defer wg.Done()
		defer close(ready)
		c.prepare(ctx, src, free, ready)
	}()
	for p := range ready {
		c.classify(ctx, p)
		free <- p.tensor
	}
	// prepare has returned (the context ended, or the source); so must
	// watchSource.
	stopWatch()
	wg.Wait()
}

// prepare takes frames from the source, applies classify_every and
// preprocesses them into free tensors.
func (c *camera) prepare(ctx context.Context, src capture.Source, free chan []float32, ready chan<- prepared) {
	var lastClassified time.Time
	for {
		var tensor []float32
		select {
		case tensor = <-free:
		case <-ctx.Done():
			return
		}
		f, err := c.nextFrame(ctx, src, &lastClassified)
		if err != nil {
			return
		}
		taken := time.Now()
		c.preprocessingSince.Store(taken.UnixNano())
		err = c.pre.Frame(f, tensor)
		c.preprocessingSince.Store(0)
		if err != nil {
			c.badFrames.Add(1)
			free <- tensor
			if c.badFrameReports.allow(time.Now()) {
				c.log.Warn("frame dropped", "seq", f.Seq, "err", err)
				c.publish(&server.ErrorReport{Camera: c.conf.Name, Message: "frame dropped: " + err.Error()})
			}
			continue
		}
		select {
		case ready <- prepared{frame: f, tensor: tensor, taken: taken, ready: time.Now()}:
		case <-ctx.Done():
			return
		}
	}
}

// nextFrame returns the next frame due for classification; an error means
// the loop should end (context done, source closed or finished).
func (c *camera) nextFrame(ctx context.Context, src capture.Source, lastClassified *time.Time) (*frame.Frame, error) {
	for {
		f, err := src.Next(ctx)
		switch {
		case err == nil:
			c.sawFrame(src, f.Time)
		case errors.Is(err, io.EOF):
			c.setState(server.CameraEnded, "")
			return nil, err
		case ctx.Err() != nil, errors.Is(err, capture.ErrClosed):
			return nil, err
		default:
			c.setState(server.CameraRetrying, err.Error())
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if !classifyDue(*lastClassified, f.Time, c.conf.ClassifyEvery) {
			c.skipped.Add(1)
			continue
		}
		*lastClassified = f.Time
		return f, nil
	}
}

// classifyDue says whether a frame captured at t is due for classification
// when the last classified one was captured at last. Frames arrive with
// jitter: one a few milliseconds short of the interval is taken rather
// than waiting a whole frame more, which at two frames an interval (what
// ffmpeg sources deliver) would lengthen the interval by half.
func classifyDue(last, t time.Time, every time.Duration) bool {
	if every <= 0 || last.IsZero() {
		return true
	}
	return t.Sub(last) >= every-every/20
}

// classify encodes one prepared frame, scores it against the current label
// set and publishes the result.
func (c *camera) classify(ctx context.Context, p prepared) {
	rep, err := c.batcher.Encode(ctx, p.tensor)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, errBatcherClosed) {
			c.log.Error("encoding failed", "err", err)
			c.publish(&server.ErrorReport{Camera: c.conf.Name, Message: "encoding failed: " + err.Error()})
		}
		return
	}
	encoded := time.Now()
	set := c.watcher.Current(c.conf.Labels)
	top, err := set.Top(rep.embedding, c.conf.TopK)
	if err != nil {
		// Only an embedding that is not a finite vector fails here: a
		// model that produces NaN. Clients must hear of it, not just
		// the log; once a minute is enough.
		c.nonFinite.Add(1)
		if c.nonFiniteReports.allow(time.Now()) {
			c.log.Error("frame not scored", "seq", p.frame.Seq, "err", err)
			c.publish(&server.ErrorReport{Camera: c.conf.Name,
				Message: fmt.Sprintf("frame %d not scored: %v; the model produces unusable embeddings (counted in status non_finite)", p.frame.Seq, err)})
		}
		return
	}
	done := time.Now()
	f := p.frame
	lat := map[string]float64{
		"capture":    ms(p.taken.Sub(f.Time)),
		"preprocess": ms(p.ready.Sub(p.taken)),
		"queue":      ms(encoded.Sub(p.ready) - rep.encodeDur),
		"encode":     ms(rep.encodeDur),
		"score":      ms(done.Sub(encoded)),
		"total":      ms(done.Sub(f.Time)),
	}
	c.record(lat, done)
	c.classified.Add(1)
	if len(top) > 0 && float64(top[0].Score) < c.conf.Threshold {
		c.belowThr.Add(1)
		return
	}
	c.publish(&server.Result{
		Camera:        c.conf.Name,
		Seq:           f.Seq,
		Time:          f.Time,
		LabelsVersion: set.Version,
		Top:           top,
		LatencyMS:     lat,
		Truth:         f.Meta,
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (c *camera) record(lat map[string]float64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.latencies == nil {
		c.latencies = make(map[string]*window)
	}
	for stage, v := range lat {
		w := c.latencies[stage]
		if w == nil {
			w = &window{}
			c.latencies[stage] = w
		}
		w.add(v)
	}
	c.rate.tick(at)
}

func (c *camera) status() server.CameraStatus {
	c.mu.Lock()
	src := c.source
	c.mu.Unlock()
	var st capture.Stats
	if src != nil {
		st = src.Stats()
	}
	s := server.CameraStatus{
		Name: c.conf.Name, Source: c.conf.Source, State: c.stateNow(),
		Width: st.Width, Height: st.Height, CaptureFPS: c.captureFPS(st.Captured),
		Captured: st.Captured, Dropped: st.Dropped, Restarts: st.Restarts, LastError: st.LastError,
		Classified: c.classified.Load(), Skipped: c.skipped.Load(), NonFinite: c.nonFinite.Load(),
		Corrupt: st.Corrupt + c.badFrames.Load(), BelowThresh: c.belowThr.Load(),
		LabelsFile: c.conf.Labels, LabelsError: c.health.labelsError(),
	}
	if st.Format != 0 {
		s.Format = st.Format.String()
	}
	if !st.LastErrorTime.IsZero() {
		s.LastErrorTime = st.LastErrorTime.UTC().Format(time.RFC3339)
	}
	if set := c.watcher.Current(c.conf.Labels); set != nil {
		s.LabelsVersion, s.Labels = set.Version, len(set.Labels)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.ClassifiedPerS = c.rate.perSecond(time.Now())
	s.FPS = s.ClassifiedPerS
	if len(c.latencies) > 0 {
		s.LatencyMS = make(map[string]server.LatencySummary)
		for stage, w := range c.latencies {
			s.LatencyMS[stage] = server.LatencySummary{P50: w.quantile(0.5), P99: w.quantile(0.99)}
		}
	}
	return s
}

// limiter admits one report a minute: a camera sending garbage, or a
// broken model, would otherwise flood clients at frame rate.
type limiter struct {
	mu   sync.Mutex
	last time.Time
}

func (l *limiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Minute {
		return false
	}
	l.last = now
	return true
}

const latencyWindow = 512

// window keeps the last latencyWindow samples of one stage.
type window struct {
	samples [latencyWindow]float64
	n, next int
}

func (w *window) add(v float64) {
	w.samples[w.next] = v
	w.next = (w.next + 1) % latencyWindow
	w.n = min(w.n+1, latencyWindow)
}

func (w *window) quantile(q float64) float64 {
	if w.n == 0 {
		return 0
	}
	s := append([]float64(nil), w.samples[:w.n]...)
	sort.Float64s(s)
	return s[int(q*float64(w.n-1)+0.5)]
}

// rateMeter counts events over the last few seconds.
type rateMeter struct {
	times [64]time.Time
	n     int
	next  int
}

func (r *rateMeter) tick(t time.Time) {
	r.times[r.next] = t
	r.next = (r.next + 1) % len(r.times)
	r.n = min(r.n+1, len(r.times))
}

func (r *rateMeter) perSecond(now time.Time) float64 {
	const span = 5 * time.Second
	count := 0
	var oldest time.Time
	for i := 0; i < r.n; i++ {
		t := r.times[i]
		if now.Sub(t) <= span {
			count++
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	if count < 2 {
		return 0
	}
	return float64(count-1) / now.Sub(oldest).Seconds()
}

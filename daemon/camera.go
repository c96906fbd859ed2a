package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/server"
)

// camera runs one [[camera]]: capture → rate limit → preprocess → encode
// (through the shared batcher) → score → publish. Capture runs in the
// source's own goroutine and keeps only the newest frame, so a slow
// pipeline never slows capture; this loop just takes whatever is newest.
type camera struct {
	conf    config.Camera
	log     *slog.Logger
	source  capture.Source
	watcher *labels.Watcher
	pre     *preprocess.Preprocessor
	batcher *batcher
	publish func(server.Event)
	scale   float32

	classified atomic.Uint64
	skipped    atomic.Uint64 // frames not classified because of classify_every
	badFrames  atomic.Uint64 // frames preprocessing rejected
	belowThr   atomic.Uint64
	// preprocessingSince is the UnixNano when preprocessing of the current
	// frame began, 0 when not preprocessing; the watchdog reads it (the
	// batcher watches the encoder).
	preprocessingSince atomic.Int64

	mu        sync.Mutex
	latencies map[string]*window
	rate      rateMeter
	clf       *engine.Classifier
	clfSet    *labels.Set

	cancel context.CancelFunc
	done   chan struct{}
}

func (c *camera) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	go c.run(ctx)
}

// close stops the loop and releases the source, the watcher and the
// preprocessor, waiting for each.
func (c *camera) close() {
	c.cancel()
	<-c.done
	c.source.Close()
	c.watcher.Close()
	c.pre.Close()
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
func (c *camera) run(ctx context.Context) {
	defer close(c.done)
	free := make(chan []float32, 2)
	for range cap(free) {
		free <- make([]float32, c.pre.TensorLen())
	}
	ready := make(chan prepared)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ready)
		c.prepare(ctx, free, ready)
	}()
	for p := range ready {
		c.classify(ctx, p)
		free <- p.tensor
	}
	wg.Wait()
}

// prepare takes frames from the source, applies classify_every and
// preprocesses them into free tensors.
func (c *camera) prepare(ctx context.Context, free chan []float32, ready chan<- prepared) {
	var lastClassified, lastBadReport time.Time
	for {
		var tensor []float32
		select {
		case tensor = <-free:
		case <-ctx.Done():
			return
		}
		f, err := c.nextFrame(ctx, &lastClassified)
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
			// One report a minute is enough to tell clients a camera sends
			// garbage without flooding them at frame rate.
			if time.Since(lastBadReport) > time.Minute {
				lastBadReport = time.Now()
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
func (c *camera) nextFrame(ctx context.Context, lastClassified *time.Time) (*frame.Frame, error) {
	for {
		f, err := c.source.Next(ctx)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			c.log.Info("source ended", "source", c.conf.Source)
			return nil, err
		case ctx.Err() != nil, errors.Is(err, capture.ErrClosed):
			return nil, err
		default:
			c.log.Warn("capture failed", "err", err)
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
	clf := c.classifier(set)
	scores, err := clf.Scores(rep.embedding)
	if err != nil {
		c.log.Error("scoring failed", "err", err)
		return
	}
	top := engine.TopK(scores, clf.Labels, c.conf.TopK)
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
	res := &server.Result{
		Camera:        c.conf.Name,
		Seq:           f.Seq,
		Time:          f.Time,
		LabelsVersion: set.Version,
		LatencyMS:     lat,
		Truth:         f.Meta,
	}
	for _, m := range top {
		res.Top = append(res.Top, server.Score{Label: m.Label, Score: m.Score})
	}
	c.publish(res)
}

// classifier returns the classifier of the current label set, built once
// per set rather than per frame.
func (c *camera) classifier(set *labels.Set) *engine.Classifier {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clfSet != set {
		c.clf = set.Classifier(c.scale)
		c.clfSet = set
	}
	return c.clf
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

// CameraStatus is one camera in the status reply.
type CameraStatus struct {
	Name          string                    `json:"name"`
	Source        string                    `json:"source"`
	Format        string                    `json:"format,omitempty"`
	Width         int                       `json:"width,omitempty"`
	Height        int                       `json:"height,omitempty"`
	FPS           float64                   `json:"fps"`
	Captured      uint64                    `json:"captured"`
	Classified    uint64                    `json:"classified"`
	Dropped       uint64                    `json:"dropped"`
	Skipped       uint64                    `json:"skipped"`
	Corrupt       uint64                    `json:"corrupt"`
	BelowThresh   uint64                    `json:"below_threshold"`
	Restarts      uint64                    `json:"restarts"`
	LastError     string                    `json:"last_error,omitempty"`
	LabelsFile    string                    `json:"labels_file"`
	LabelsVersion uint64                    `json:"labels_version"`
	Labels        int                       `json:"labels"`
	LatencyMS     map[string]LatencySummary `json:"latency_ms,omitempty"`
}

// LatencySummary is over the last latencyWindow frames.
type LatencySummary struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func (c *camera) status() CameraStatus {
	st := c.source.Stats()
	s := CameraStatus{
		Name: c.conf.Name, Source: c.conf.Source,
		Width: st.Width, Height: st.Height,
		Captured: st.Captured, Dropped: st.Dropped, Restarts: st.Restarts, LastError: st.LastError,
		Classified: c.classified.Load(), Skipped: c.skipped.Load(),
		Corrupt: st.Corrupt + c.badFrames.Load(), BelowThresh: c.belowThr.Load(),
		LabelsFile: c.conf.Labels,
	}
	if st.Format != 0 {
		s.Format = st.Format.String()
	}
	if set := c.watcher.Current(c.conf.Labels); set != nil {
		s.LabelsVersion, s.Labels = set.Version, len(set.Labels)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.FPS = c.rate.perSecond(time.Now())
	if len(c.latencies) > 0 {
		s.LatencyMS = make(map[string]LatencySummary)
		for stage, w := range c.latencies {
			s.LatencyMS[stage] = LatencySummary{P50: w.quantile(0.5), P99: w.quantile(0.99)}
		}
	}
	return s
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

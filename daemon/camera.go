package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/internal/lifecycle"
	"github.com/clipd/clipd/internal/sched"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/state"
)

// camera runs one [[camera]]: capture → rate limit → preprocess every
// target (the whole frame and each region) → encode them in one batch
// (through the shared batcher, with other cameras' targets) → score each
// against its own labels → publish. Capture runs in the source's own
// goroutine and keeps only the newest frame, so a slow pipeline never
// slows capture; this loop just takes whatever is newest.
//
// Its lifecycle serves reloads: prepareCamera makes one without a source,
// start runs it on a source, halt stops the loop and hands the source
// back (to be reused by a successor with the same source settings, or
// closed), release closes what is left.
type camera struct {
	conf    config.Camera
	log     *slog.Logger
	targets []*target // the whole frame first, when classified
	hub     *labelsHub
	pre     *preprocess.Preprocessor
	batcher *batcher
	publish func(server.Event)
	outputs *outputs
	// history is the camera memory, nil when off; imageModel names the
	// image model in its records.
	history    *history.Store
	imageModel string
	metrics    *metrics.Metrics
	// priority is the CPU priority preprocessing starts at; starved
	// judges a frame's preprocessing at it (sched.Starved).
	priority sched.Priority
	starved  func(wall, cpu time.Duration) bool
	// prepPriority is the priority preprocessing runs at now, as the
	// kernel reports it (a sched.Priority; status shows it).
	prepPriority atomic.Int32

	// last is the newest frame classified, for snapshot.
	last atomic.Pointer[frame.Frame]

	classified atomic.Uint64
	skipped    atomic.Uint64 // frames not classified because of classify_every
	badFrames  atomic.Uint64 // frames preprocessing rejected
	nonFinite  atomic.Uint64 // frames with a target whose embedding could not be scored
	// Reports of bad frames and regions that do not fit the frame are
	// spaced, not sent at frame rate (unusable embeddings: per target).
	badFrameReports, boxReports limiter
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

// target is what one classification answers: a camera's whole frame
// (region "") or one region, with its own labels, threshold and top_k.
type target struct {
	name   targetName
	conf   config.Region // for the whole frame: the camera's labels, threshold and top_k
	labels *labelsFile

	classified atomic.Uint64
	belowThr   atomic.Uint64
	// nonFiniteReports spaces the reports of the target's unusable
	// embeddings.
	nonFiniteReports limiter

	mu    sync.Mutex
	box   frame.Box // in the last frame classified (observe sets it)
	err   error     // why the region does not fit the current frames
	total window
	// tracker keeps the target's state (nil once a successor took it
	// over: inheritStates); seenVersion and seenFile are the label set it
	// was last told of.
	tracker     *state.Tracker
	seenVersion uint64
	seenFile    string
}

// targetsOf lists what a camera classifies, in the order results are
// published: the whole frame (unless whole_frame = false), then the
// regions as configured.
func targetsOf(cc config.Camera) []*target {
	var ts []*target
	if !cc.RegionsOnly {
		ts = append(ts, &target{name: targetName{camera: cc.Name},
			conf: config.Region{Labels: cc.Labels, Threshold: cc.Threshold, TopK: cc.TopK}})
	}
	for _, r := range cc.Regions {
		ts = append(ts, &target{name: targetName{camera: cc.Name, region: r.Name}, conf: r})
	}
	return ts
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

// release lets go of the labels files and closes the preprocessor of a
// halted camera.
func (c *camera) release() {
	for _, t := range c.targets {
		if t.labels != nil {
			c.hub.release(t.labels, t.name)
		}
	}
	c.pre.Close()
}

// close stops the camera and releases everything, waiting for each part.
func (c *camera) close() {
	if src := c.halt(); src != nil {
		src.Close()
	}
	c.release()
}

// prepared is a frame that has been preprocessed and waits for the encoder:
// one tensor per target that fits the frame.
type prepared struct {
	frame   *frame.Frame
	tensors *tensorSet
	targets []*target // those tensors are of
	// boxes are where targets lie in this frame: the frame being prepared
	// next may have another size, and so another layout.
	boxes []frame.Box
	taken time.Time // when the frame was taken from the source
	ready time.Time // when preprocessing finished
}

// tensorSet holds one input tensor per target of the camera.
type tensorSet struct{ t [][]float32 }

// run preprocesses the next frame while the previous one is being encoded:
// two tensor sets circulate between the preprocessing loop and the
// encoding loop, so the encoder never waits for preprocessing. A frame
// waits at most one encoder call; the source keeps only the newest frame
// meanwhile.
func (c *camera) run(ctx context.Context, src capture.Source) {
	ctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	free := make(chan *tensorSet, 2)
	for range cap(free) {
		ts := &tensorSet{t: make([][]float32, len(c.targets))}
		for i := range ts.t {
			ts.t[i] = make([]float32, c.pre.TensorLen())
		}
		free <- ts
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
		free <- p.tensors
	}
	// prepare has returned (the context ended, or the source); so must
	// watchSource.
	stopWatch()
	wg.Wait()
}

// layout is where each target lies in frames of one size.
type layout struct {
	width, height int
	boxes         []frame.Box
	targets       []*target
}

// layoutFor places the targets in a width×height frame. A region that
// does not fit (a pixel box beyond a stream's own size) is left out and
// reported; the others go on.
func (c *camera) layoutFor(width, height int) layout {
	l := layout{width: width, height: height}
	var misfits []error
	for _, t := range c.targets {
		box := frame.Full(width, height)
		var err error
		if t.name.region != "" {
			box, err = t.conf.BoxIn(width, height)
		}
		t.mu.Lock()
		t.err = err
		t.mu.Unlock()
		if err != nil {
			misfits = append(misfits, fmt.Errorf("region %q: %w", t.name.region, err))
			continue
		}
		l.boxes = append(l.boxes, box)
		l.targets = append(l.targets, t)
	}
	if err := errors.Join(misfits...); err != nil && c.boxReports.allow(time.Now()) {
		c.log.Warn("regions left out: they do not fit the frame", "width", width, "height", height, "err", err)
		c.publish(&server.ErrorReport{Camera: c.conf.Name,
			Message: fmt.Sprintf("%dx%d frames: %v; these regions are not classified", width, height, err)})
	}
	return l
}

// starvedFrames is how many frames in a row preprocessing may be starved
// at a priority below normal before it moves to normal.
const starvedFrames = 3

// prepare takes frames from the source, applies classify_every and
// preprocesses every target of each frame into a free tensor set. Below
// normal priority it runs on a thread of its own at c.priority; when busy
// processes at normal priority starve it there, it goes on at normal.
func (c *camera) prepare(ctx context.Context, src capture.Source, free chan *tensorSet, ready chan<- prepared) {
	var st prepareState
	if c.priority != sched.Normal {
		starved := false
		err := sched.Run(c.priority, func() { starved = c.prepareLoop(ctx, src, free, ready, &st, true) })
		switch {
		case err != nil:
			c.log.Warn("preprocessing runs at normal CPU priority", "err", err)
		case !starved:
			return
		default:
			c.log.Warn("preprocessing was starved at " + c.priority.String() +
				" CPU priority by other busy processes: it runs at normal priority from now on")
		}
	}
	c.prepareLoop(ctx, src, free, ready, &st, false)
}

// prepareState is what the preprocessing loop keeps from frame to frame.
type prepareState struct {
	lastClassified time.Time
	lay            layout
}

// prepareLoop is prepare's loop. It returns when the context or the
// source ends, or, with watchStarving, with true once preprocessing was
// starved for starvedFrames frames in a row.
func (c *camera) prepareLoop(ctx context.Context, src capture.Source, free chan *tensorSet, ready chan<- prepared,
	st *prepareState, watchStarving bool) (starved bool) {
	c.notePriority()
	inARow := 0
	for {
		var ts *tensorSet
		select {
		case ts = <-free:
		case <-ctx.Done():
			return false
		}
		f, err := c.nextFrame(ctx, src, &st.lastClassified)
		if err != nil {
			return false
		}
		if st.lay.width != f.Width || st.lay.height != f.Height {
			st.lay = c.layoutFor(f.Width, f.Height)
		}
		lay := st.lay
		if len(lay.boxes) == 0 {
			free <- ts
			continue
		}
		taken := time.Now()
		var cpuBefore time.Duration
		if watchStarving {
			cpuBefore = sched.ThreadCPU()
		}
		c.preprocessingSince.Store(taken.UnixNano())
		err = c.pre.FrameBoxes(f, lay.boxes, ts.t[:len(lay.boxes)])
		c.preprocessingSince.Store(0)
		if watchStarving {
			if c.starved(time.Since(taken), sched.ThreadCPU()-cpuBefore) {
				inARow++
			} else {
				inARow = 0
			}
		}
		if err != nil {
			c.badFrames.Add(1)
			free <- ts
			if c.badFrameReports.allow(time.Now()) {
				c.log.Warn("frame dropped", "seq", f.Seq, "err", err)
				c.publish(&server.ErrorReport{Camera: c.conf.Name, Message: "frame dropped: " + err.Error()})
			}
		} else {
			select {
			case ready <- prepared{frame: f, tensors: ts, targets: lay.targets, boxes: lay.boxes, taken: taken, ready: time.Now()}:
			case <-ctx.Done():
				return false
			}
		}
		if inARow >= starvedFrames {
			return true
		}
	}
}

// notePriority records the priority the calling thread runs at, as the
// kernel reports it, for status.
func (c *camera) notePriority() {
	p, err := sched.ThreadPriority(0)
	if err != nil {
		c.log.Debug("cannot read the preprocessing thread's CPU priority", "err", err)
		p = c.priority
	}
	c.prepPriority.Store(int32(p))
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
		default:
			// The context ended or the source was closed: Next returns no
			// other error, as a source retries its failures on its own
			// (watchSource reports them).
			return nil, err
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

// classify encodes the targets of one prepared frame in one batch, scores
// each against its current label set and publishes a result for each.
func (c *camera) classify(ctx context.Context, p prepared) {
	rep, err := c.batcher.Encode(ctx, p.tensors.t[:len(p.targets)]...)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, errBatcherClosed) {
			c.log.Error("encoding failed", "err", err)
			c.publish(&server.ErrorReport{Camera: c.conf.Name, Message: "encoding failed: " + err.Error()})
		}
		return
	}
	encoded := time.Now()
	f := p.frame
	results := make([]*server.Result, 0, len(p.targets))
	scored, unscored := 0, 0
	for i, t := range p.targets {
		set := t.labels.current()
		top, err := set.Top(rep.embeddings[i], t.conf.TopK)
		if err != nil {
			// Only an embedding that is not a finite vector fails here: a
			// model that produces NaN, perhaps for one crop only, which
			// must not cost the frame's other targets their results.
			// Clients must hear of it, not just the log; once a minute a
			// target is enough.
			unscored++
			if t.nonFiniteReports.allow(time.Now()) {
				c.log.Error("frame not scored", "seq", f.Seq, "target", t.name.String(), "err", err)
				c.publish(&server.ErrorReport{Camera: c.conf.Name, Region: t.name.region,
					Message: fmt.Sprintf("frame %d of %s not scored: %v; the model produces unusable embeddings (counted in status non_finite)", f.Seq, t.name, err)})
			}
			continue
		}
		scored++
		t.classified.Add(1)
		changed := c.observe(t, f, p.boxes[i], set, top[0])
		c.remember(t, f, t.outline(p.boxes[i]), rep.embeddings[i], set, top[0].Label, changed)
		c.outputs.classified(t.name)
		if float64(top[0].Score) < t.conf.Threshold {
			t.belowThr.Add(1)
			continue
		}
		results = append(results, &server.Result{
			Camera: c.conf.Name, Region: t.name.region, Seq: f.Seq, Time: f.Time,
			LabelsVersion: set.Version, Top: top, Truth: f.Meta,
		})
	}
	if unscored > 0 {
		c.nonFinite.Add(1)
	}
	if scored == 0 {
		return // not classified: nothing of it to time or to show
	}
	done := time.Now()
	lat := map[string]float64{
		"capture":    ms(p.taken.Sub(f.Time)),
		"preprocess": ms(p.ready.Sub(p.taken)),
		"queue":      ms(encoded.Sub(p.ready) - rep.encodeDur),
		"encode":     ms(rep.encodeDur),
		"score":      ms(done.Sub(encoded)),
		"total":      ms(done.Sub(f.Time)),
	}
	c.record(lat, done)
	c.metrics.ObserveFrame(c.conf.Name, lat)
	for _, t := range p.targets {
		t.mu.Lock()
		t.total.add(lat["total"])
		t.mu.Unlock()
	}
	c.classified.Add(1)
	c.last.Store(f)
	for _, r := range results {
		r.LatencyMS = lat
		c.publish(r)
		c.outputs.result(r)
	}
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
		Name: c.conf.Name, Source: capture.Redact(c.conf.Source), State: c.stateNow(),
		Width: st.Width, Height: st.Height, CaptureFPS: c.captureFPS(st.Captured),
		Captured: st.Captured, Dropped: st.Dropped, Restarts: st.Restarts, LastError: st.LastError,
		Classified: c.classified.Load(), Skipped: c.skipped.Load(), NonFinite: c.nonFinite.Load(),
		Corrupt: st.Corrupt + c.badFrames.Load(), WholeFrame: !c.conf.RegionsOnly,
		PreprocessPriority: sched.Priority(c.prepPriority.Load()).String(),
	}
	if st.Format != 0 {
		s.Format = st.Format.String()
	}
	if !st.LastErrorTime.IsZero() {
		s.LastErrorTime = st.LastErrorTime.UTC().Format(time.RFC3339)
	}
	for _, t := range c.targets {
		ts := t.status(c.hub)
		if t.name.region == "" {
			s.LabelsFile, s.LabelsVersion, s.Labels, s.LabelsError = ts.LabelsFile, ts.LabelsVersion, ts.Labels, ts.LabelsError
			s.BelowThresh, s.FrameState = ts.BelowThresh, ts.State
			continue
		}
		s.Regions = append(s.Regions, ts)
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

func (t *target) status(hub *labelsHub) server.RegionStatus {
	rs := server.RegionStatus{Name: t.name.region, LabelsFile: t.conf.Labels, LabelsError: hub.lastError(t.labels),
		Classified: t.classified.Load(), BelowThresh: t.belowThr.Load()}
	t.mu.Lock()
	if t.tracker != nil { // nil: handed over to a successor
		if cur := t.tracker.Current(); cur.Label != "" {
			rs.State = &cur
		}
	}
	t.mu.Unlock()
	if set := t.labels.current(); set != nil {
		rs.LabelsVersion, rs.Labels = set.Version, len(set.Labels)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		rs.Error = t.err.Error()
	} else if t.box != (frame.Box{}) {
		rs.Box = &[4]int{t.box.X1, t.box.Y1, t.box.X2, t.box.Y2}
	}
	if t.total.n > 0 {
		rs.LatencyMS = &server.LatencySummary{P50: t.total.quantile(0.5), P99: t.total.quantile(0.99)}
	}
	return rs
}

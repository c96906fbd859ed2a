// Package daemon is clipd's long-running service: it opens the model,
// starts one pipeline per configured camera, keeps their label sets current,
// serves results on the unix socket, and talks to systemd. Everything is
// started by Run and stopped by cancelling its context.
//
// Every component follows one lifecycle (docs/architecture.md): a
// constructor that validates and may fail, one private goroutine, and a
// Close that stops it and waits. Reloads are prepared in full before
// anything running is stopped, as caddy applies a new config: a camera
// whose new settings cannot be prepared keeps running with its old ones.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/internal/sched"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/systemd"
	"github.com/clipd/clipd/telemetry"
	"github.com/clipd/clipd/web"
)

// Options configure Run.
type Options struct {
	// ConfigPath is re-read on reload (SIGHUP).
	ConfigPath string
	Config     *config.Config
	Log        *slog.Logger
	// LogLevel, if set, is the level of Log's handler: a reload that
	// changes [log] level applies it. Without it, and for [log] format,
	// a change takes effect at the next restart.
	LogLevel *slog.LevelVar
	Version  string
	// Reload receives a value for each SIGHUP.
	Reload <-chan struct{}
	// OnEvent, if set, sees every published event (clipd run --show).
	OnEvent func(server.Event)
	// StopTimeout bounds the shutdown, whatever is in flight (a start-up,
	// a reload embedding a large label set, a slow encoder); default 10s.
	StopTimeout time.Duration
	// TelemetryRoot roots the sysfs paths of GPU telemetry (tests).
	TelemetryRoot string
	// MQTTStateRefresh replaces mqtt.Options.StateRefresh (tests: a
	// sensor's refresh in milliseconds, not a minute).
	MQTTStateRefresh time.Duration

	// OpenSource opens a camera's source; capture.Open if nil. Tests
	// drive the daemon with scripted sources through it.
	OpenSource func(capture.Config, *slog.Logger) (capture.Source, error)
	// OpenEncoder, if set, replaces the model's backends (see
	// model.Options.OpenEncoder).
	OpenEncoder func(*bundle.Bundle) (engine.Encoder, error)
	// Starved, if set, replaces sched.Starved: when a frame's
	// preprocessing at idle priority counts as starved (tests).
	Starved func(wall, cpu time.Duration) bool
}

// stuckAfter is how long one frame may be in the pipeline before the
// watchdog considers the daemon wedged.
const stuckAfter = 20 * time.Second

type daemon struct {
	opts     Options
	log      *slog.Logger
	model    *model.Model
	embedder *labels.Embedder
	labels   *labelsHub
	outputs  *outputs
	batcher  *batcher
	// history is the camera memory (nil when off); imageModel names the
	// image model its records are made with.
	history    *history.Store
	imageModel string
	metrics    *metrics.Metrics
	// capturePriority is [model] capture_priority resolved for the
	// backend: the cameras' helpers and preprocessing run at it.
	capturePriority sched.Priority
	web             *web.Server // nil when [http] listen is unset
	server          *server.Server
	gpu             *telemetry.Reader
	started         time.Time

	// classifyPre preprocesses query images: socket classify and search
	// by image, and the web page's search. Those come concurrently;
	// classifyMu lets one at a time use it.
	classifyMu  sync.Mutex
	classifyPre *preprocess.Preprocessor

	announceMu sync.Mutex // see announceTargets

	mu sync.Mutex
	// conf is the configuration running now: after a reload in which a
	// camera could not be restarted, that camera's entry is its old one,
	// so that the next reload tries again.
	conf       *config.Config
	cameras    map[string]*camera
	lastReload *server.ReloadStatus
}

// Run serves until ctx ends, then shuts down within Options.StopTimeout.
func Run(ctx context.Context, opts Options) error {
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.OpenSource == nil {
		opts.OpenSource = capture.Open
	}
	d := &daemon{opts: opts, log: opts.Log, conf: opts.Config, cameras: make(map[string]*camera), started: time.Now()}
	if d.log == nil {
		d.log = slog.Default()
	}

	// Start-up (model load, label embedding) runs beside the signal
	// loop, so that SIGTERM is honoured within the stop timeout even
	// while it runs: it stops at its next check of the context.
	initCtx, cancelInit := context.WithCancel(ctx)
	defer cancelInit()
	initDone := make(chan error, 1)
	go func() { initDone <- d.initialize(initCtx) }()
	select {
	case err := <-initDone:
		if err != nil {
			// Bounded like any stop: what did start may be as slow to stop
			// (an encoder call in flight), and SIGTERM must still end it.
			serr := d.shutdownBy(time.Now().Add(opts.StopTimeout))
			if ctx.Err() != nil {
				return serr // stopped while starting
			}
			return errors.Join(err, serr)
		}
	case <-ctx.Done():
		deadline := time.Now().Add(opts.StopTimeout)
		cancelInit()
		select {
		case <-initDone:
		case <-time.After(time.Until(deadline)):
			return fmt.Errorf("stopping: start-up did not end within %s; exiting anyway", opts.StopTimeout)
		}
		return d.shutdownBy(deadline)
	}

	systemd.Ready()
	d.setStatus()

	var wd *systemd.Watchdog
	if interval, ok := systemd.WatchdogInterval(); ok {
		wd = &systemd.Watchdog{Interval: interval, Healthy: d.healthy,
			OnUnhealthy: func() { d.log.Error("pipeline stuck; no longer feeding the systemd watchdog") }}
		if err := wd.Initialize(); err != nil {
			d.log.Warn("systemd watchdog", "err", err)
			wd = nil
		}
	}

	// A reload runs in its own goroutine for the same reason; SIGHUPs
	// that arrive meanwhile are folded into one more reload after it.
	reloadCtx, cancelReload := context.WithCancel(ctx)
	defer cancelReload()
	reloadDone := make(chan struct{})
	reloading, again := false, false
	startReload := func() {
		reloading = true
		systemd.Reloading()
		go func() {
			d.reload(reloadCtx)
			reloadDone <- struct{}{}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			deadline := time.Now().Add(opts.StopTimeout)
			systemd.Stopping()
			d.log.Info("stopping")
			if wd != nil {
				wd.Close()
			}
			cancelReload()
			if reloading {
				select {
				case <-reloadDone:
				case <-time.After(time.Until(deadline)):
					return fmt.Errorf("stopping: a reload did not end within %s; exiting anyway", opts.StopTimeout)
				}
			}
			return d.shutdownBy(deadline)
		case <-opts.Reload:
			if reloading {
				again = true
			} else {
				startReload()
			}
		case <-reloadDone:
			reloading = false
			systemd.Ready()
			d.setStatus()
			if again {
				again = false
				startReload()
			}
		}
	}
}

func (d *daemon) initialize(ctx context.Context) error {
	m := d.conf.Model
	status := func(msg string) {
		d.log.Info(msg)
		systemd.Status(msg)
	}
	status("loading model " + m.Bundle)
	mod, err := model.Open(m.Bundle, model.Options{
		Backend: m.Backend, ONNXRuntimeLib: m.ONNXRuntimeLib, Threads: m.Threads, Spinning: m.Spinning,
		TextOnDemand: true, TextIdle: model.DefaultTextIdle,
		EngineCache: m.EngineCache, MaxBatch: m.MaxBatch, OptBatch: max(targetCount(d.conf), 1),
		Log: d.log, Progress: status, OpenEncoder: d.opts.OpenEncoder,
	})
	if err != nil {
		return err
	}
	d.model = mod
	d.capturePriority = capturePriority(m.CapturePriority, mod.Encoder.Backend())
	var store labels.PromptStore
	if m.PromptCacheMax > 0 {
		if cache, err := mod.OpenPromptCache(m.StateDir, m.PromptCacheMax); err != nil {
			d.log.Warn("no prompt cache: every start encodes the labels again", "err", err)
		} else {
			store = cache
		}
	}
	d.embedder, _ = labels.OpenEmbedder(labels.EmbedderConfig{Encoder: mod, Store: store, Log: d.log,
		Progress: d.encodingStatus})
	if err := d.newMetrics(); err != nil {
		return err
	}
	d.labels = newLabelsHub(d.embedder, d.log, d.publish)
	d.labels.metrics = d.metrics
	d.labels.onLoaded = d.announceTargets
	mo := mqtt.Options{Version: d.opts.Version, StateRefresh: d.opts.MQTTStateRefresh}
	if d.outputs, err = newOutputs(d.conf, mo, d.log, d.publish); err != nil {
		return err
	}
	d.outputs.metrics = d.metrics
	if err := d.openHistory(); err != nil {
		return err
	}
	// Before the socket: once the socket accepts, so does the listener.
	if err := d.startHTTP(); err != nil {
		return err
	}
	pcfg := mod.PreprocessConfig()
	pcfg.MaxPixels = d.conf.Socket.MaxImagePixels
	d.classifyPre = preprocess.New(pcfg)
	d.batcher = newBatcher(mod.EncodeImages, d.classifyPre.TensorLen(), max(m.MaxBatch, 1))
	d.gpu = telemetry.New(telemetry.Options{Root: d.opts.TelemetryRoot})

	s := d.conf.Socket
	sc := server.Config{
		Path: s.Path, Mode: s.Mode, Group: s.Group,
		ClientQueue: s.ClientQueue, MaxClients: s.MaxClients, ClassifyDirs: s.ClassifyDirs,
		Hello: d.hello, Handler: handler{d},
		Logf: func(format string, args ...any) { d.log.Warn(fmt.Sprintf(format, args...)) },
	}
	if ls, err := systemd.Listeners(); err != nil {
		return fmt.Errorf("socket activation: %w", err)
	} else if len(ls) > 0 {
		sc.Listener = ls[0]
		for _, extra := range ls[1:] {
			extra.Close()
		}
	}
	if d.server, err = server.New(sc); err != nil {
		return err
	}
	// Clients may connect from here on (hello lists the cameras still
	// starting); each camera logs "camera started" once its source
	// delivers.
	d.log.Info("serving", "socket", d.server.Path(), "cameras", len(d.conf.Cameras), "backend", mod.Encoder.Backend(),
		"capture_priority", d.capturePriority)
	for _, cc := range d.conf.Cameras {
		status("starting camera " + cc.Name)
		c, err := d.prepareCamera(ctx, cc)
		if err != nil {
			return fmt.Errorf("camera %q: %w", cc.Name, err)
		}
		if err := d.swapIn(nil, c); err != nil {
			c.release()
			return fmt.Errorf("camera %q: %w", cc.Name, err)
		}
	}
	d.announceTargets()
	return nil
}

// announceTargets tells the outputs which cameras and targets there are,
// and their labels. Start-up, reloads and the labels watchers call it
// concurrently: announceMu, held from reading the cameras to handing them
// over, keeps an older list from being applied after a newer one.
func (d *daemon) announceTargets() {
	d.announceMu.Lock()
	defer d.announceMu.Unlock()
	d.mu.Lock()
	cams := make([]*camera, 0, len(d.cameras))
	for _, name := range sortedKeys(d.cameras) {
		cams = append(cams, d.cameras[name])
	}
	d.mu.Unlock()
	d.outputs.targets(cams)
}

// prepareCamera does everything for a camera that can fail, without
// touching what runs: the source settings checked as Open will check
// them, the labels loaded and embedded, a preprocessor made. The source
// itself is opened by swapIn, because a device cannot be opened twice.
func (d *daemon) prepareCamera(ctx context.Context, cc config.Camera) (*camera, error) {
	if _, err := capture.Preflight(d.sourceConfig(cc)); err != nil {
		return nil, err
	}
	c := &camera{
		conf: cc, log: d.log.With("camera", cc.Name), targets: targetsOf(cc), hub: d.labels,
		pre: d.model.NewPreprocessor(), batcher: d.batcher, publish: d.publish, outputs: d.outputs,
		history: d.history, imageModel: d.imageModel, metrics: d.metrics,
		priority: d.capturePriority, starved: d.opts.Starved,
	}
	if c.starved == nil {
		c.starved = sched.Starved
	}
	c.prepPriority.Store(int32(c.priority))
	regions := make([]string, 0, len(c.targets))
	for _, t := range c.targets {
		regions = append(regions, t.name.region)
	}
	d.metrics.AddTargets(cc.Name, regions...)
	for _, t := range c.targets {
		hold := t.conf.StateHold
		if t.name.region == "" {
			hold = cc.StateHold
		}
		var err error
		if t.tracker, err = state.NewTracker(cc.Name, t.name.region, hold); err != nil {
			c.release()
			return nil, err
		}
		f, err := d.labels.acquire(ctx, t.conf.Labels, t.name)
		if err != nil {
			c.release()
			if t.name.region != "" {
				return nil, fmt.Errorf("region %q: %w", t.name.region, err)
			}
			return nil, err
		}
		t.labels = f
	}
	return c, nil
}

// targetCount is how many images one frame of every camera makes: the
// batch TensorRT optimizes for.
func targetCount(conf *config.Config) int {
	n := 0
	for _, cc := range conf.Cameras {
		n += len(targetsOf(cc))
	}
	return n
}

// swapIn starts c in place of old (nil for a new camera), stopping old
// only once c can take over. When the source settings are unchanged, c
// takes over old's source and the device is never reopened; otherwise
// old's source is closed, c's opened, and if that fails old resumes on a
// reopened source of its own and the error is returned. Opening fails
// only on what can be known at once (settings, a missing program): a
// network or device source connects in the background and retries there,
// so an address that does not answer replaces the old source all the same.
func (d *daemon) swapIn(old, c *camera) error {
	var src capture.Source
	reused := false
	if old != nil {
		src = old.halt()
		if reused = reflect.DeepEqual(d.sourceConfig(old.conf), d.sourceConfig(c.conf)); !reused {
			src.Close()
			src = nil
		}
	}
	if src == nil {
		var err error
		src, err = d.opts.OpenSource(d.sourceConfig(c.conf), c.log)
		if err != nil {
			if old != nil {
				if prev, perr := d.opts.OpenSource(d.sourceConfig(old.conf), old.log); perr == nil {
					old.start(prev)
				} else {
					d.unregister(old)
					old.setOffline()
					old.release()
					return fmt.Errorf("%w; the previous source could not be reopened either (%v): the camera is stopped", err, perr)
				}
			}
			return err
		}
	}
	if old != nil {
		c.inheritStates(old)
		// A new source is starting, not up, until it delivers.
		if reused {
			c.inheritOnline(old)
		} else {
			old.setOffline()
		}
		old.release()
	}
	// Registered before it runs, so that status turns to c before c
	// writes the trackers it took over.
	d.mu.Lock()
	d.cameras[c.conf.Name] = c
	d.mu.Unlock()
	c.start(src)
	c.log.Debug("source opened; waiting for its first frame", "source", capture.Redact(c.conf.Source))
	return nil
}

func (d *daemon) unregister(c *camera) {
	d.mu.Lock()
	if d.cameras[c.conf.Name] == c {
		delete(d.cameras, c.conf.Name)
	}
	d.mu.Unlock()
}

func (d *daemon) stopCamera(name string) {
	d.mu.Lock()
	c := d.cameras[name]
	delete(d.cameras, name)
	d.mu.Unlock()
	if c != nil {
		c.close()
		c.setOffline()
		d.log.Info("camera stopped", "camera", name)
	}
}

func (d *daemon) publish(ev server.Event) {
	if d.opts.OnEvent != nil {
		d.opts.OnEvent(ev)
	}
	if d.server != nil {
		d.server.Publish(ev)
	}
}

// healthy is the watchdog's check: no frame has been stuck in the pipeline.
// A camera that delivers nothing (unplugged) is not a wedged pipeline:
// capture retries on its own.
func (d *daemon) healthy() bool {
	if d.batcher.BusyFor() > stuckAfter {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.cameras {
		if since := c.preprocessingSince.Load(); since != 0 && time.Since(time.Unix(0, since)) > stuckAfter {
			return false
		}
	}
	return true
}

func (d *daemon) setStatus() {
	d.mu.Lock()
	n, last := len(d.cameras), d.lastReload
	d.mu.Unlock()
	msg := fmt.Sprintf("serving %d camera(s) on %s with %s", n, d.server.Path(), d.model.Encoder.Backend())
	if last != nil && !last.OK {
		msg += fmt.Sprintf("; last reload failed: %s", errors.Join(stringErrors(last.Errors)...))
	}
	systemd.Status(msg)
}

func stringErrors(msgs []string) []error {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = errors.New(m)
	}
	return errs
}

// encodingStatus shows prompt encoding in systemd's status line, and the
// usual status once it is done.
func (d *daemon) encodingStatus(p labels.Progress) {
	if p.Done < p.Total || d.server == nil {
		systemd.Status(p.String())
		return
	}
	d.setStatus()
}

func (d *daemon) cameraNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.cameras))
}

// hello names every configured camera, also those still starting, so
// that a client connecting early knows what to expect.
func (d *daemon) hello() server.Hello {
	d.mu.Lock()
	names := make([]string, 0, len(d.conf.Cameras))
	for _, cc := range d.conf.Cameras {
		names = append(names, cc.Name)
	}
	d.mu.Unlock()
	slices.Sort(names)
	return server.Hello{Version: d.opts.Version, Model: d.model.Bundle.Dir, Backend: d.model.Encoder.Backend(), Cameras: names}
}

// shutdownBy stops everything, giving up at deadline: the process is
// about to exit, and a wedged encoder call must not keep it alive.
func (d *daemon) shutdownBy(deadline time.Time) error {
	done := make(chan struct{})
	go func() {
		d.shutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(time.Until(deadline)):
		return fmt.Errorf("shutdown took longer than %s; exiting anyway", d.opts.StopTimeout)
	}
}

// shutdown stops what initialize started, those that bring work in first:
// the cameras, then the socket and the listener (whose requests read the
// stores and the encoder), and only then what they use: the outputs, the
// camera memory, the encoder and the model. It copes with a partial start.
func (d *daemon) shutdown() {
	for _, name := range d.cameraNames() {
		d.stopCamera(name)
	}
	if d.server != nil {
		d.server.Close()
	}
	if d.web != nil {
		d.web.Close()
	}
	if d.outputs != nil {
		d.outputs.close()
	}
	if d.history != nil {
		d.history.Close()
	}
	if d.batcher != nil {
		d.batcher.Close()
	}
	if d.classifyPre != nil {
		d.classifyPre.Close()
	}
	if d.gpu != nil {
		d.gpu.Close()
	}
	if d.model != nil {
		d.model.Close()
	}
}

// sourceConfig is what a camera asks of its source.
func (d *daemon) sourceConfig(cc config.Camera) capture.Config {
	cfg := cc.Capture()
	cfg.FPS = captureFPS(cc)
	cfg.Priority = d.capturePriority
	return cfg
}

// capturePriority resolves [model] capture_priority for the encoder's
// backend. On the CPU the encoder keeps the cores busy, and capture at
// normal priority preempts its threads at every frame, stalling whole
// intra-op batches; at idle it fills the encoder's gaps instead (README,
// Performance). With TensorRT the cores have room, and nothing measured
// says idle would win there.
func capturePriority(setting, backend string) sched.Priority {
	if setting == config.CapturePriorityAuto {
		if backend == engine.BackendONNXRuntime {
			return sched.Idle
		}
		return sched.Normal
	}
	p, _ := sched.Parse(setting) // config validated it
	return p
}

// captureFPS is the rate asked of a camera's source. ffmpeg and GStreamer
// sources are asked for at most twice the classification rate: the helper
// converts and pipes every frame it outputs, and frames between
// classifications would only be dropped (twice, so that a frame is never
// more than half an interval from due). A V4L2 device keeps its rate: a
// lower one lengthens exposure and latency. The pattern camera keeps it
// too, as its scenes are counted in frames.
func captureFPS(cc config.Camera) int {
	if !cc.SourceKind().Helper() {
		return cc.FPS
	}
	if cc.ClassifyEvery <= 0 {
		return cc.FPS
	}
	perSecond := int(math.Ceil(2 * float64(time.Second) / float64(cc.ClassifyEvery)))
	return max(1, min(cc.FPS, perSecond))
}

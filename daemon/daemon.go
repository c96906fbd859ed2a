// Package daemon is clipd's long-running service: it opens the model,
// starts one pipeline per configured camera, keeps their label sets current,
// serves results on the unix socket, and talks to systemd. Everything is
// started by Run and stopped by cancelling its context.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/systemd"
	"github.com/clipd/clipd/telemetry"
)

// Options configure Run.
type Options struct {
	// ConfigPath is re-read on reload (SIGHUP).
	ConfigPath string
	Config     *config.Config
	Log        *slog.Logger
	Version    string
	// Reload receives a value for each SIGHUP.
	Reload <-chan struct{}
	// OnEvent, if set, sees every published event (clipd run --show).
	OnEvent func(server.Event)
	// StopTimeout bounds the shutdown; default 10s.
	StopTimeout time.Duration
	// TelemetryRoot roots the sysfs paths of GPU telemetry (tests).
	TelemetryRoot string
}

// stuckAfter is how long one frame may be in the pipeline before the
// watchdog considers the daemon wedged.
const stuckAfter = 20 * time.Second

type daemon struct {
	opts     Options
	log      *slog.Logger
	conf     *config.Config
	model    *model.Model
	embedder *labels.Embedder
	batcher  *batcher
	server   *server.Server
	gpu      *telemetry.Reader
	started  time.Time

	mu      sync.Mutex
	cameras map[string]*camera
}

// Run serves until ctx ends, then shuts down within Options.StopTimeout.
func Run(ctx context.Context, opts Options) error {
	d := &daemon{opts: opts, log: opts.Log, conf: opts.Config, cameras: make(map[string]*camera), started: time.Now()}
	if d.log == nil {
		d.log = slog.Default()
	}
	if opts.StopTimeout == 0 {
		d.opts.StopTimeout = 10 * time.Second
	}
	if err := d.initialize(ctx); err != nil {
		d.shutdown()
		if ctx.Err() != nil {
			return nil // stopped while starting (encoding prompts)
		}
		return err
	}
	systemd.Ready()
	d.setStatus()
	d.log.Info("serving", "socket", d.server.Path(), "cameras", len(d.cameras), "backend", d.model.Encoder.Backend())

	var wd *systemd.Watchdog
	if interval, ok := systemd.WatchdogInterval(); ok {
		wd = &systemd.Watchdog{Interval: interval, Healthy: d.healthy,
			OnUnhealthy: func() { d.log.Error("pipeline stuck; no longer feeding the systemd watchdog") }}
		if err := wd.Initialize(); err != nil {
			d.log.Warn("systemd watchdog", "err", err)
			wd = nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			systemd.Stopping()
			if wd != nil {
				wd.Close()
			}
			d.log.Info("stopping")
			return d.shutdownWithin(d.opts.StopTimeout)
		case <-opts.Reload:
			systemd.Reloading()
			if err := d.reload(); err != nil {
				d.log.Error("reload failed; keeping the running configuration", "err", err)
				d.publish(&server.ErrorReport{File: opts.ConfigPath, Message: "reload failed: " + err.Error()})
			}
			systemd.Ready()
			d.setStatus()
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
		Backend: m.Backend, ONNXRuntimeLib: m.ONNXRuntimeLib, Threads: m.Threads,
		EngineCache: m.EngineCache, MaxBatch: m.MaxBatch, OptBatch: max(len(d.conf.Cameras), 1),
		Log: d.log, Progress: status,
	})
	if err != nil {
		return err
	}
	d.model = mod
	var store labels.PromptStore
	if m.PromptCacheMax > 0 {
		if cache, err := mod.OpenPromptCache(m.StateDir, m.PromptCacheMax); err != nil {
			d.log.Warn("no prompt cache: every start encodes the labels again", "err", err)
		} else {
			store = cache
		}
	}
	d.embedder, _ = labels.OpenEmbedder(labels.EmbedderConfig{Encoder: mod, Store: store, Context: ctx, Log: d.log,
		Progress: d.encodingStatus})
	pre := mod.NewPreprocessor()
	tensorLen := pre.TensorLen()
	pre.Close()
	d.batcher = newBatcher(mod.EncodeImages, tensorLen, max(m.MaxBatch, 1))
	d.gpu = telemetry.New(telemetry.Options{Root: d.opts.TelemetryRoot})

	sc := server.Config{
		Path: d.conf.Socket.Path, Mode: d.conf.Socket.Mode, Group: d.conf.Socket.Group,
		ClientQueue: d.conf.Socket.ClientQueue, MaxClients: d.conf.Socket.MaxClients,
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
	for _, cc := range d.conf.Cameras {
		status("starting camera " + cc.Name)
		if err := d.startCamera(cc); err != nil {
			return err
		}
	}
	return nil
}

func (d *daemon) startCamera(cc config.Camera) error {
	log := d.log.With("camera", cc.Name)
	format, _ := cc.PixelFormat()
	watcher, err := labels.NewWatcher(labels.WatcherConfig{
		Files:    []string{cc.Labels},
		Embedder: d.embedder,
		OnEvent:  func(ev labels.Event) { d.labelsEvent(cc.Name, log, ev) },
	})
	if err != nil {
		return fmt.Errorf("camera %q: %w", cc.Name, err)
	}
	src, err := capture.Open(capture.Config{
		Name: cc.Name, Source: cc.Source, Format: format,
		Width: cc.Width, Height: cc.Height, FPS: captureFPS(cc), Loop: cc.Loop,
	}, log)
	if err != nil {
		watcher.Close()
		return fmt.Errorf("camera %q: %w", cc.Name, err)
	}
	c := &camera{
		conf: cc, log: log, source: src, watcher: watcher,
		pre: d.model.NewPreprocessor(), batcher: d.batcher, publish: d.publish,
		scale: d.model.LogitScale(),
	}
	c.start()
	d.mu.Lock()
	d.cameras[cc.Name] = c
	d.mu.Unlock()
	log.Info("camera started", "source", cc.Source, "labels", cc.Labels)
	return nil
}

func (d *daemon) stopCamera(name string) {
	d.mu.Lock()
	c := d.cameras[name]
	delete(d.cameras, name)
	d.mu.Unlock()
	if c != nil {
		c.close()
		d.log.Info("camera stopped", "camera", name)
	}
}

func (d *daemon) labelsEvent(cameraName string, log *slog.Logger, ev labels.Event) {
	switch ev.Kind {
	case labels.Loaded:
		log.Info("labels loaded", "file", ev.File, "version", ev.Version, "labels", len(ev.Set.Labels))
		d.publish(&server.LabelsUpdate{Camera: cameraName, File: ev.File, Version: ev.Version, Labels: ev.Set.Names()})
	default:
		msg := "labels file " + ev.Kind.String()
		if ev.Err != nil {
			msg = ev.Err.Error()
		}
		log.Warn("labels not reloaded; keeping the previous set", "file", ev.File, "line", ev.Line, "err", msg)
		d.publish(&server.ErrorReport{Camera: cameraName, File: ev.File, Line: ev.Line,
			Message: msg + " (keeping labels version " + fmt.Sprint(ev.Version) + ")"})
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

// reload re-reads the config file and restarts only the cameras whose
// settings changed.
func (d *daemon) reload() error {
	next, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	ch := config.Diff(d.conf, next)
	if ch.ModelChanged || ch.SocketChanged {
		d.log.Warn("[model] and [socket] changes take effect at the next restart")
	}
	for _, name := range slices.Concat(ch.Removed, ch.Changed) {
		d.stopCamera(name)
	}
	var errs []error
	for _, cc := range next.Cameras {
		if slices.Contains(ch.Added, cc.Name) || slices.Contains(ch.Changed, cc.Name) {
			if err := d.startCamera(cc); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Keep the new model and socket settings out of the running config so
	// that the next diff still reports them as pending.
	next.Model, next.Socket = d.conf.Model, d.conf.Socket
	d.conf = next
	d.log.Info("configuration reloaded", "added", ch.Added, "removed", ch.Removed, "restarted", ch.Changed)
	return errors.Join(errs...)
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
	n := len(d.cameras)
	d.mu.Unlock()
	systemd.Status(fmt.Sprintf("serving %d camera(s) on %s with %s", n, d.server.Path(), d.model.Encoder.Backend()))
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

func (d *daemon) hello() server.Hello {
	return server.Hello{Version: d.opts.Version, Model: d.model.Bundle.Dir, Backend: d.model.Encoder.Backend(), Cameras: d.cameraNames()}
}

func (d *daemon) shutdownWithin(limit time.Duration) error {
	done := make(chan struct{})
	go func() {
		d.shutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("shutdown took longer than %s; exiting anyway", limit)
	}
}

// shutdown stops what initialize started, in reverse order; it copes with a
// partial start.
func (d *daemon) shutdown() {
	for _, name := range d.cameraNames() {
		d.stopCamera(name)
	}
	if d.server != nil {
		d.server.Close()
	}
	if d.batcher != nil {
		d.batcher.Close()
	}
	if d.gpu != nil {
		d.gpu.Close()
	}
	if d.model != nil {
		d.model.Close()
	}
}

// captureFPS is the rate asked of a camera's source. ffmpeg and GStreamer
// sources are asked for at most twice the classification rate: the helper
// converts and pipes every frame it outputs, and frames between
// classifications would only be dropped (twice, so that a frame is never
// more than half an interval from due). A V4L2 device keeps its rate: a
// lower one lengthens exposure and latency. The pattern camera keeps it
// too, as its scenes are counted in frames.
func captureFPS(cc config.Camera) int {
	switch cc.SourceKind() {
	case config.SourceRTSP, config.SourceHTTP, config.SourceFile, config.SourceGStreamer:
	default:
		return cc.FPS
	}
	if cc.ClassifyEvery <= 0 {
		return cc.FPS
	}
	perSecond := int(math.Ceil(2 * float64(time.Second) / float64(cc.ClassifyEvery)))
	return max(1, min(cc.FPS, perSecond))
}

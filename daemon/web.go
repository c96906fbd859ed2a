package daemon

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/web"
)

// The [http] listener (package web) and the Prometheus metrics behind its
// /metrics: the daemon is their Backend.

// newMetrics creates the metrics registry, always: its observations are
// cheap, and whatever is created later can count into it.
func (d *daemon) newMetrics() error {
	m, err := metrics.New(metrics.Options{Log: d.log, Snapshot: d.metricsSnapshot})
	d.metrics = m
	return err
}

// startHTTP starts the listener when [http] listen is set.
func (d *daemon) startHTTP() error {
	if d.conf.HTTP.Listen == "" {
		return nil
	}
	var err error
	d.web, err = web.New(d.conf.HTTP, webBackend{d}, web.Options{Metrics: d.metrics.Handler(), Log: d.log.With("output", "http")})
	if err != nil {
		return err
	}
	d.log.Info("http listening", "addr", d.web.Addr().String())
	return nil
}

// metricsSnapshot is what a scrape reads: the status reply, the same
// numbers `clipd status` shows, and whether each camera delivers, by the
// rule MQTT's camera status follows.
func (d *daemon) metricsSnapshot() metrics.Snapshot {
	st := handler{d}.Status().(server.Status)
	s := metrics.Snapshot{Status: st, MQTT: st.MQTT, History: st.History, Snapshots: st.Snapshots,
		CameraUp: make(map[string]bool, len(st.Cameras))}
	for _, c := range st.Cameras {
		s.CameraUp[c.Name] = sourceUp(c.State)
	}
	return s
}

// webBackend answers the listener's questions.
type webBackend struct{ d *daemon }

func (b webBackend) Status() server.Status { return handler{b.d}.Status().(server.Status) }

// Health is the watchdog's rule: 200 while frames make progress.
func (b webBackend) Health() (bool, string) {
	if b.d.healthy() {
		return true, "frames are making progress"
	}
	return false, fmt.Sprintf("a frame has been in the pipeline for more than %s", stuckAfter)
}

func (b webBackend) Cameras() []web.Camera {
	d := b.d
	d.mu.Lock()
	cams := make([]*camera, 0, len(d.cameras))
	for _, name := range sortedKeys(d.cameras) {
		cams = append(cams, d.cameras[name])
	}
	d.mu.Unlock()
	out := make([]web.Camera, 0, len(cams))
	for _, c := range cams {
		wc := web.Camera{Name: c.conf.Name}
		if f := c.last.Load(); f != nil {
			wc.Width, wc.Height = f.Width, f.Height
		}
		for _, t := range c.targets {
			t.mu.Lock()
			wt := web.Target{Region: t.name.region}
			if t.tracker != nil { // nil: handed over to a successor
				wt.State = t.tracker.Current()
			}
			if t.name.region != "" && t.err == nil && t.box != (frame.Box{}) {
				box := t.box
				wt.Box = &box
			}
			t.mu.Unlock()
			wc.Targets = append(wc.Targets, wt)
		}
		out = append(out, wc)
	}
	return out
}

func (b webBackend) LatestFrame(name string) ([]byte, time.Time, error) {
	d := b.d
	d.mu.Lock()
	c := d.cameras[name]
	d.mu.Unlock()
	if c == nil {
		return nil, time.Time{}, fmt.Errorf("camera %s: %w", server.Quote(name), web.ErrNotFound)
	}
	f := c.last.Load()
	if f == nil {
		return nil, time.Time{}, fmt.Errorf("camera %q has not classified a frame yet: %w", name, web.ErrUnavailable)
	}
	jpeg, err := snapshot.Encode(f, nil, 0)
	return jpeg, f.Time, err
}

func (b webBackend) Events(n int) []state.Event { return b.d.outputs.latest(n) }

func (b webBackend) Search(ctx context.Context, req server.SearchRequest) (*history.Result, error) {
	if req.ImageB64 != "" {
		data, err := base64.StdEncoding.DecodeString(req.ImageB64)
		if err != nil {
			return nil, fmt.Errorf("%w: image_b64: %v", server.ErrBadSearch, err)
		}
		req.ImageData = data
	}
	return b.d.search(ctx, req)
}

func (b webBackend) Thumbnail(ctx context.Context, id int64) ([]byte, error) {
	if b.d.history == nil {
		return nil, fmt.Errorf("the camera memory is off: %w", web.ErrNotFound)
	}
	jpeg, _, ok, err := b.d.history.Thumbnail(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("thumbnail %d: %w", id, web.ErrNotFound)
	}
	return jpeg, nil
}

func (b webBackend) Snapshot(name string) ([]byte, error) {
	if b.d.outputs.snapshots == nil {
		return nil, fmt.Errorf("snapshots are off: %w", web.ErrNotFound)
	}
	return b.d.outputs.snapshots.Read(name)
}

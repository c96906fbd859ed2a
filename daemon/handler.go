package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/procfs"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
)

// handler answers the socket's status and classify commands.
type handler struct{ d *daemon }

func (h handler) Status() any {
	d := h.d
	st := server.Status{
		Version: d.opts.Version, Model: d.model.Bundle.Dir, Backend: d.model.Encoder.Backend(),
		UptimeS: time.Since(d.started).Seconds(), Clients: d.server.Clients(), GPU: d.gpu.Read(),
	}
	d.mu.Lock()
	cams := make([]*camera, 0, len(d.cameras))
	for _, name := range sortedKeys(d.cameras) {
		cams = append(cams, d.cameras[name])
	}
	st.Reload = d.lastReload
	d.mu.Unlock()
	for _, c := range cams {
		st.Cameras = append(st.Cameras, c.status())
	}
	st.Process = processStatus()
	d.outputs.status(&st)
	if d.history != nil {
		hs := d.history.Status()
		st.History = &hs
	}
	return st
}

func processStatus() server.ProcessStatus {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ps := server.ProcessStatus{Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc}
	if p, err := procfs.ReadProcess("/", os.Getpid()); err == nil {
		ps.RSSBytes, ps.FDs = p.RSSBytes, p.FDs
	}
	return ps
}

// Classify scores one image the server has read (from image_b64, or a file
// beneath socket.classify_dirs) against a camera's labels or ad-hoc ones.
func (h handler) Classify(ctx context.Context, req server.ClassifyRequest) (any, error) {
	d := h.d
	start := time.Now()
	var set *labels.Set
	switch {
	case len(req.Labels) > 0:
		s, err := labels.FromNames(req.Labels, nil)
		if err != nil {
			return nil, err
		}
		// Not kept: a client's labels must not grow the daemon's memory
		// or push the labels files' prompts out of the prompt cache.
		if err := d.embedder.EmbedAdHoc(ctx, s); err != nil {
			return nil, err
		}
		set = s
	default:
		t, err := d.findTarget(req.Camera)
		if err != nil {
			return nil, err
		}
		set = t.labels.current()
	}
	emb, err := d.imageEmbedding(ctx, req.ImageData)
	if err != nil {
		return nil, err
	}
	k := req.TopK
	if k == 0 {
		k = 5
	}
	top, err := set.Top(emb, k)
	if err != nil {
		return nil, err
	}
	return server.ClassifyReply{Top: top, LabelsVersion: set.Version, LatencyMS: ms(time.Since(start))}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// findTarget resolves classify's "camera": a camera's name (its whole
// frame, or its only region when it classifies no whole frame), or
// "camera/region"; "" when there is only one camera.
func (d *daemon) findTarget(name string) (*target, error) {
	camName, region, _ := strings.Cut(name, "/")
	d.mu.Lock()
	if camName == "" && len(d.cameras) == 1 {
		for n := range d.cameras {
			camName = n
		}
	}
	c := d.cameras[camName]
	d.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("no camera %s: give \"camera\" (one of %v, or \"camera/region\") or \"labels\"", server.Quote(name), d.cameraNames())
	}
	for _, t := range c.targets {
		if t.name.region == region {
			return t, nil
		}
	}
	if region == "" && len(c.targets) > 0 {
		return nil, fmt.Errorf("camera %q classifies regions only (whole_frame = false): name one, \"%s/%s\"", camName, camName, c.targets[0].name.region)
	}
	return nil, fmt.Errorf("camera %q has no region %s", camName, server.Quote(region))
}

// Snapshot encodes the newest classified frame of a camera ("cam"), with a
// region outlined ("cam/region").
func (h handler) Snapshot(_ context.Context, name string) (any, error) {
	d := h.d
	camName, region, _ := strings.Cut(name, "/")
	d.mu.Lock()
	c := d.cameras[camName]
	d.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("no camera %s (one of %v)", server.Quote(camName), d.cameraNames())
	}
	var box *frame.Box
	if region != "" {
		i := slices.IndexFunc(c.targets, func(t *target) bool { return t.name.region == region })
		if i < 0 {
			return nil, fmt.Errorf("camera %q has no region %s", camName, server.Quote(region))
		}
		t := c.targets[i]
		t.mu.Lock()
		b := t.box
		t.mu.Unlock()
		box = &b
	}
	f := c.last.Load()
	if f == nil {
		return nil, fmt.Errorf("camera %q has not classified a frame yet", camName)
	}
	jpeg, err := snapshot.Encode(f, box, snapshot.DefaultQuality)
	if err != nil {
		return nil, err
	}
	return server.SnapshotReply{Camera: camName, Region: region, Seq: f.Seq, Time: f.Time, JPEG: jpeg}, nil
}

func (h handler) Search(ctx context.Context, req server.SearchRequest) (any, error) {
	return h.d.search(ctx, req)
}

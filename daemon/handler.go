package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/telemetry"
)

// handler answers the socket's status and classify commands.
type handler struct{ d *daemon }

// Status is the reply to {"cmd":"status"}.
type Status struct {
	Version string              `json:"version"`
	Model   string              `json:"model"`
	Backend string              `json:"backend"`
	UptimeS float64             `json:"uptime_s"`
	Cameras []CameraStatus      `json:"cameras"`
	Clients []server.ClientInfo `json:"clients"`
	GPU     telemetry.Snapshot  `json:"gpu"`
	Encoder map[string]float64  `json:"encoder,omitempty"`
}

func (h handler) Status() any {
	d := h.d
	st := Status{
		Version: d.opts.Version, Model: d.model.Bundle.Dir, Backend: d.model.Encoder.Backend(),
		UptimeS: time.Since(d.started).Seconds(), Clients: d.server.Clients(), GPU: d.gpu.Read(),
	}
	d.mu.Lock()
	cams := make([]*camera, 0, len(d.cameras))
	for _, name := range sortedKeys(d.cameras) {
		cams = append(cams, d.cameras[name])
	}
	d.mu.Unlock()
	for _, c := range cams {
		st.Cameras = append(st.Cameras, c.status())
	}
	return st
}

// ClassifyReply is the reply to {"cmd":"classify"}.
type ClassifyReply struct {
	Top           []engine.Match `json:"top"`
	LabelsVersion uint64         `json:"labels_version,omitempty"`
	LatencyMS     float64        `json:"latency_ms"`
}

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
		if err := d.embedder.Embed(ctx, s); err != nil {
			return nil, err
		}
		set = s
	default:
		name := req.Camera
		d.mu.Lock()
		if name == "" && len(d.cameras) == 1 {
			for n := range d.cameras {
				name = n
			}
		}
		c := d.cameras[name]
		d.mu.Unlock()
		if c == nil {
			return nil, fmt.Errorf("no camera %q: give \"camera\" (one of %v) or \"labels\"", name, d.cameraNames())
		}
		set = c.watcher.Current(c.conf.Labels)
	}
	pre := d.model.NewPreprocessor()
	defer pre.Close()
	tensor := make([]float32, pre.TensorLen())
	var err error
	if req.ImagePath != "" {
		err = pre.File(req.ImagePath, tensor)
	} else {
		err = pre.Image(req.ImageData, tensor)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("the daemon cannot read the image: %w", err)
		}
		return nil, err
	}
	rep, err := d.batcher.Encode(ctx, tensor)
	if err != nil {
		return nil, err
	}
	clf := set.Classifier(d.model.LogitScale())
	scores, err := clf.Scores(rep.embedding)
	if err != nil {
		return nil, err
	}
	k := req.TopK
	if k == 0 {
		k = 5
	}
	return ClassifyReply{Top: engine.TopK(scores, clf.Labels, k), LabelsVersion: set.Version, LatencyMS: ms(time.Since(start))}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

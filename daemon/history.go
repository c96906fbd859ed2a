package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/trt"
	"github.com/clipd/clipd/web"
)

// Thumbnails of the camera memory: small enough that a week of them at the
// defaults stays a fraction of max_bytes, large enough to recognize a
// scene on the search page.
const (
	thumbnailSide    = 256
	thumbnailQuality = 75
)

// openHistory opens the camera memory when [history] enables it. The
// image model is named by the hash of its ONNX file, so that records of
// another model are never mixed into a search.
func (d *daemon) openHistory() error {
	h := d.conf.History
	if !h.Enabled {
		return nil
	}
	sum, err := trt.FileSHA256(d.model.Bundle.VisualONNX)
	if err != nil {
		return fmt.Errorf("history: hashing the image model: %w", err)
	}
	d.imageModel = "sha256:" + sum
	// "0s" is every classified frame (every), a thumbnail with every
	// stored record (thumbnail_every); the store's zero would mean its
	// default instead.
	every, thumbEvery := h.Every, h.ThumbnailEvery
	if every == 0 {
		every = time.Nanosecond
	}
	if thumbEvery == 0 {
		thumbEvery = time.Nanosecond
	}
	d.history, err = history.Open(history.Config{Dir: h.Dir, Every: every, Retention: h.Retention,
		MaxBytes: h.MaxBytes, ThumbnailEvery: thumbEvery, Log: d.log.With("output", "history")})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// remember stores a target's embedding when the camera memory wants it:
// at most one per history.every, and every frame that changed a state,
// with a thumbnail now and then. Nothing here blocks: Add queues.
func (c *camera) remember(t *target, f *frame.Frame, box *frame.Box, emb []float32, set *labels.Set, top string, changed bool) {
	if c.history == nil {
		return
	}
	ht := history.Target{Camera: t.name.camera, Region: t.name.region}
	want := c.history.Wants(ht, f.Time, changed)
	if !want.Record {
		return
	}
	rec := history.Record{Target: ht, Time: f.Time, Seq: f.Seq, Model: c.imageModel, Embedding: emb,
		LabelsVersion: set.Version, TopLabel: top, Changed: changed}
	if want.Thumbnail {
		jpeg, err := snapshot.Thumbnail(f, box, thumbnailSide, thumbnailQuality)
		if err != nil {
			c.log.Warn("history: no thumbnail", "seq", f.Seq, "err", err)
		}
		rec.Thumbnail = jpeg
	}
	if err := c.history.Add(rec); err != nil {
		c.log.Warn("history: record refused", "seq", f.Seq, "err", err)
	}
}

// search answers the socket's search command (and the web page's): a
// query embedding from text or an image, or a label's probability among
// a target's current labels, over the stored frames.
//
// Its errors say whose they are, for the listeners (the web package
// answers by them): the client's mistakes (an unknown camera, region or
// label, an image that is not a picture) wrap server.ErrBadSearch, a
// memory that is off wraps web.ErrUnavailable; anything else is the
// daemon's own failure.
func (d *daemon) search(ctx context.Context, req server.SearchRequest) (*history.Result, error) {
	if d.history == nil {
		return nil, fmt.Errorf("the camera memory is off ([history] enabled = false): %w", web.ErrUnavailable)
	}
	q, err := req.Query(time.Now())
	if err != nil {
		return nil, err
	}
	q.Model = d.imageModel
	switch {
	case req.Text != "":
		embs, err := d.model.EncodePrompts(ctx, []string{req.Text})
		if err != nil {
			return nil, err
		}
		q.Embedding = embs[0]
	case req.Label != "":
		name := req.Camera
		if req.Region != "" {
			name += "/" + req.Region
		}
		t, err := d.findTarget(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", server.ErrBadSearch, err)
		}
		set := t.labels.current()
		i := slices.Index(set.Names(), req.Label)
		if i < 0 {
			return nil, fmt.Errorf("%w: label %s is not one of %s's labels (%s)", server.ErrBadSearch, server.Quote(req.Label), t.name, set.File)
		}
		q.Label = &history.LabelQuery{Classifier: set.Classifier(), Index: i}
		if len(q.Targets) == 0 {
			q.Targets = []history.TargetFilter{{Camera: t.name.camera, Region: t.name.region, WholeFrame: t.name.region == ""}}
		}
	default:
		if q.Embedding, err = d.imageEmbedding(ctx, req.ImageData); err != nil {
			if errors.As(err, new(badImageError)) {
				return nil, fmt.Errorf("%w: image: %w", server.ErrBadSearch, err)
			}
			return nil, err
		}
	}
	return d.history.Search(ctx, q)
}

// badImageError is a query image that could not be read as a picture:
// the client's mistake, not the daemon's. Its text is the decoder's.
type badImageError struct{ err error }

func (e badImageError) Error() string { return e.err.Error() }
func (e badImageError) Unwrap() error { return e.err }

// imageEmbedding encodes a query image the way frames are encoded; a
// picture that does not decode is a badImageError.
func (d *daemon) imageEmbedding(ctx context.Context, data []byte) ([]float32, error) {
	d.classifyMu.Lock()
	tensor := make([]float32, d.classifyPre.TensorLen())
	err := d.classifyPre.Image(data, tensor)
	d.classifyMu.Unlock()
	if err != nil {
		return nil, badImageError{err}
	}
	rep, err := d.batcher.Encode(ctx, tensor)
	if err != nil {
		return nil, err
	}
	return rep.embeddings[0], nil
}

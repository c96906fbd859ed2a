package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// batcher serializes image-encoder calls and packs the images that are
// ready at the same moment (the whole frame and the regions of one camera,
// and those of other cameras) into one call: one batch of n costs less
// than n calls on every backend, and on TensorRT the profile is tuned for
// a batch of every target of every camera. A request's images always go
// out together; a call never exceeds maxBatch images.
type batcher struct {
	encode    func(pixels []float32, n int) ([][]float32, error)
	tensorLen int
	maxBatch  int

	requests chan *encodeRequest
	done     chan struct{}
	wg       sync.WaitGroup

	// busySince is when the call in flight started (zero when idle), for
	// the watchdog's health check.
	mu        sync.Mutex
	busySince time.Time
}

type encodeRequest struct {
	tensors [][]float32
	reply   chan encodeReply
}

type encodeReply struct {
	// embeddings are in the order of the request's tensors.
	embeddings [][]float32
	err        error
	batch      int
	encodeDur  time.Duration
}

var errBatcherClosed = errors.New("encoder stopped")

func newBatcher(encode func([]float32, int) ([][]float32, error), tensorLen, maxBatch int) *batcher {
	b := &batcher{
		encode:    encode,
		tensorLen: tensorLen,
		maxBatch:  max(maxBatch, 1),
		requests:  make(chan *encodeRequest),
		done:      make(chan struct{}),
	}
	b.wg.Add(1)
	go b.run()
	return b
}

// Encode returns the normalized embeddings of preprocessed images, encoded
// in one batch with each other and with whatever else is waiting. The
// tensors are only read until Encode returns.
func (b *batcher) Encode(ctx context.Context, tensors ...[]float32) (encodeReply, error) {
	req := &encodeRequest{tensors: tensors, reply: make(chan encodeReply, 1)}
	select {
	case b.requests <- req:
	case <-ctx.Done():
		return encodeReply{}, ctx.Err()
	case <-b.done:
		return encodeReply{}, errBatcherClosed
	}
	// Once accepted, the request is always answered: waiting for it keeps
	// the tensor alive and unmodified while it is being copied.
	r := <-req.reply
	return r, r.err
}

// BusyFor is how long the encoder call in flight has been running.
func (b *batcher) BusyFor() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.busySince.IsZero() {
		return 0
	}
	return time.Since(b.busySince)
}

func (b *batcher) Close() {
	close(b.done)
	b.wg.Wait()
}

func (b *batcher) run() {
	defer b.wg.Done()
	pixels := make([]float32, 0, b.tensorLen*b.maxBatch)
	batch := make([]*encodeRequest, 0, b.maxBatch)
	var held *encodeRequest // taken, but did not fit in the last batch
	for {
		batch = batch[:0]
		if held != nil {
			batch, held = append(batch, held), nil
		} else {
			select {
			case r := <-b.requests:
				batch = append(batch, r)
			case <-b.done:
				return
			}
		}
		images := len(batch[0].tensors)
	gather:
		for images < b.maxBatch {
			select {
			case r := <-b.requests:
				if images+len(r.tensors) > b.maxBatch {
					held = r
					break gather
				}
				batch = append(batch, r)
				images += len(r.tensors)
			default:
				break gather
			}
		}
		pixels = pixels[:0]
		for _, r := range batch {
			for _, t := range r.tensors {
				pixels = append(pixels, t...)
			}
		}
		start := time.Now()
		b.mu.Lock()
		b.busySince = start
		b.mu.Unlock()
		embs, err := b.encodeChunks(pixels, images)
		if err == nil && len(embs) != images {
			// An encoder that breaks its contract fails its batch; the
			// rows could not be matched to the images anyway.
			err = fmt.Errorf("encoder returned %d embeddings for %d images", len(embs), images)
		}
		dur := time.Since(start)
		b.mu.Lock()
		b.busySince = time.Time{}
		b.mu.Unlock()
		for _, r := range batch {
			rep := encodeReply{err: err, batch: images, encodeDur: dur}
			if err == nil {
				rep.embeddings, embs = embs[:len(r.tensors):len(r.tensors)], embs[len(r.tensors):]
			}
			r.reply <- rep
		}
	}
}

// encodeChunks encodes n images, in calls of at most maxBatch: a single
// request may hold more images than the TensorRT profile allows.
func (b *batcher) encodeChunks(pixels []float32, n int) ([][]float32, error) {
	if n <= b.maxBatch {
		return b.encode(pixels, n)
	}
	out := make([][]float32, 0, n)
	for lo := 0; lo < n; lo += b.maxBatch {
		k := min(b.maxBatch, n-lo)
		embs, err := b.encode(pixels[lo*b.tensorLen:(lo+k)*b.tensorLen], k)
		if err != nil {
			return nil, err
		}
		out = append(out, embs...)
	}
	return out, nil
}

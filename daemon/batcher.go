package daemon

import (
	"context"
	"errors"
	"sync"
	"time"
)

// batcher serializes image-encoder calls and packs the frames of cameras
// that are ready at the same moment into one call: one batch of n costs
// less than n calls on every backend, and on TensorRT the profile is tuned
// for a batch of one frame per camera.
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
	tensor []float32
	reply  chan encodeReply
}

type encodeReply struct {
	embedding []float32
	err       error
	batch     int
	encodeDur time.Duration
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

// Encode returns the normalized embedding of one preprocessed image. The
// tensor is only read until Encode returns.
func (b *batcher) Encode(ctx context.Context, tensor []float32) (encodeReply, error) {
	req := &encodeRequest{tensor: tensor, reply: make(chan encodeReply, 1)}
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
	for {
		batch = batch[:0]
		select {
		case r := <-b.requests:
			batch = append(batch, r)
		case <-b.done:
			return
		}
	gather:
		for len(batch) < b.maxBatch {
			select {
			case r := <-b.requests:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		pixels = pixels[:0]
		for _, r := range batch {
			pixels = append(pixels, r.tensor...)
		}
		start := time.Now()
		b.mu.Lock()
		b.busySince = start
		b.mu.Unlock()
		embs, err := b.encode(pixels, len(batch))
		dur := time.Since(start)
		b.mu.Lock()
		b.busySince = time.Time{}
		b.mu.Unlock()
		for i, r := range batch {
			rep := encodeReply{err: err, batch: len(batch), encodeDur: dur}
			if err == nil {
				rep.embedding = embs[i]
			}
			r.reply <- rep
		}
	}
}

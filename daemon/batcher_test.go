package daemon

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcherPacksWaitingFrames checks that frames which arrive while the
// encoder is busy go out together in one call, each getting its own row.
func TestBatcherPacksWaitingFrames(t *testing.T) {
	const tensorLen = 3
	release := make(chan struct{})
	var mu sync.Mutex
	var batches []int
	encode := func(pixels []float32, n int) ([][]float32, error) {
		mu.Lock()
		first := len(batches) == 0
		batches = append(batches, n)
		mu.Unlock()
		if first {
			<-release // hold the encoder so that the others queue up
		}
		if len(pixels) != n*tensorLen {
			return nil, errors.New("packed tensor has the wrong length")
		}
		out := make([][]float32, n)
		for i := range out {
			out[i] = []float32{pixels[i*tensorLen]} // the row's first value identifies it
		}
		return out, nil
	}
	b := newBatcher(encode, tensorLen, 8)
	defer b.Close()

	results := make(chan [2]float32, 5)
	send := func(id float32) {
		rep, err := b.Encode(context.Background(), []float32{id, 0, 0})
		if err != nil {
			t.Error(err)
			return
		}
		results <- [2]float32{id, rep.embeddings[0][0]}
	}
	go send(1)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 })
	for id := float32(2); id <= 5; id++ {
		go send(id)
	}
	// The four callers must be blocked handing over their requests (the
	// select in Encode) before the encoder is freed; a fixed sleep would
	// be a guess on a loaded machine.
	waitFor(t, func() bool { return goroutinesBlocked("[select", "daemon.(*batcher).Encode") == 4 })
	close(release)
	for range 5 {
		r := <-results
		if r[0] != r[1] {
			t.Errorf("frame %v got the embedding of frame %v", r[0], r[1])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || batches[0] != 1 || batches[1] != 4 {
		t.Errorf("encoder calls had batch sizes %v, want [1 4]", batches)
	}
}

// The images of one request go out together and come back in order; a
// request too large for one call is split, and one that does not fit the
// batch being gathered waits for the next.
func TestBatcherKeepsRequestsWholeAndInOrder(t *testing.T) {
	const tensorLen = 2
	var mu sync.Mutex
	var calls []int
	encode := func(pixels []float32, n int) ([][]float32, error) {
		mu.Lock()
		calls = append(calls, n)
		mu.Unlock()
		out := make([][]float32, n)
		for i := range out {
			out[i] = []float32{pixels[i*tensorLen]}
		}
		return out, nil
	}
	b := newBatcher(encode, tensorLen, 3)
	defer b.Close()
	tensors := func(ids ...float32) [][]float32 {
		var ts [][]float32
		for _, id := range ids {
			ts = append(ts, []float32{id, 0})
		}
		return ts
	}
	rep, err := b.Encode(context.Background(), tensors(1, 2, 3, 4, 5)...)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range rep.embeddings {
		if e[0] != float32(i+1) {
			t.Errorf("image %d got the embedding of %v", i+1, e[0])
		}
	}
	mu.Lock()
	if len(calls) != 2 || calls[0] != 3 || calls[1] != 2 {
		t.Errorf("5 images with maxBatch 3 went out as %v, want [3 2]", calls)
	}
	mu.Unlock()
}

func TestBatcherPassesErrorsAndStops(t *testing.T) {
	fail := errors.New("device lost")
	b := newBatcher(func([]float32, int) ([][]float32, error) { return nil, fail }, 1, 2)
	if _, err := b.Encode(context.Background(), []float32{1}); !errors.Is(err, fail) {
		t.Errorf("encoder error not passed on: %v", err)
	}
	b.Close()
	if _, err := b.Encode(context.Background(), []float32{1}); !errors.Is(err, errBatcherClosed) {
		t.Errorf("Encode after Close: %v", err)
	}
}

// An encoder that returns fewer rows than it was given fails that batch
// (an error for each of its requests), and the batcher serves on.
func TestBatcherRefusesShortReplies(t *testing.T) {
	var short atomic.Bool
	short.Store(true)
	b := newBatcher(func(_ []float32, n int) ([][]float32, error) {
		if short.Load() {
			n--
		}
		return make([][]float32, n), nil
	}, 1, 4)
	defer b.Close()
	if _, err := b.Encode(context.Background(), []float32{1}, []float32{2}); err == nil || !strings.Contains(err.Error(), "1 embeddings for 2 images") {
		t.Errorf("a short reply: %v", err)
	}
	short.Store(false)
	if rep, err := b.Encode(context.Background(), []float32{1}, []float32{2}); err != nil || len(rep.embeddings) != 2 {
		t.Errorf("after a short reply: %d embeddings, %v", len(rep.embeddings), err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// goroutinesBlocked counts the goroutines whose state starts with state
// (as runtime.Stack prints it, e.g. "[select") and whose stack holds fn.
func goroutinesBlocked(state, fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, " "+state) && strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

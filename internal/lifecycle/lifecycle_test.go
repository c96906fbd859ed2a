package lifecycle

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestCloseCancelsAndWaits(t *testing.T) {
	var finished bool
	l := Go(func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // cleanup that Close must wait for
		finished = true
	})
	l.Close()
	if !finished {
		t.Fatal("Close returned before run did")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Close() }()
	}
	wg.Wait()
}

func TestDoneWhenRunEndsOnItsOwn(t *testing.T) {
	l := Go(func(context.Context) {})
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after run returned")
	}
	l.Close()
}

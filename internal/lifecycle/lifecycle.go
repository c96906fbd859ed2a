// Package lifecycle is the running half of clipd's one component shape
// (docs/architecture.md): a constructor validates its config and prepares
// everything that can fail, then starts one private goroutine with Go;
// Close cancels that goroutine's context and waits for it to return, so
// that nothing a component started outlives it.
package lifecycle

import (
	"context"
	"sync"
)

// Loop is one running goroutine.
type Loop struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Go runs run in a new goroutine with a context that Close cancels.
func Go(run func(ctx context.Context)) *Loop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		run(ctx)
	}()
	return l
}

// Close cancels the loop's context and waits until run has returned. It
// may be called more than once, from any goroutine.
func (l *Loop) Close() {
	l.once.Do(l.cancel)
	<-l.done
}

// Done is closed once run has returned, for callers that wait for a loop
// that ends on its own (a file played to its end).
func (l *Loop) Done() <-chan struct{} { return l.done }

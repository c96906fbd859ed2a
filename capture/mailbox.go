package capture

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/clipd/clipd/frame"
)

// mailbox is the one-slot hand-over between a capture goroutine and the
// consumer, plus the counters every source keeps. The capture side never
// blocks on it: put replaces an untaken frame and counts it as dropped.
type mailbox struct {
	mu     sync.Mutex
	latest *frame.Frame
	// endErr, once set, is returned by take after the last frame is gone
	// (io.EOF at the end of a file, ErrClosed after Close).
	endErr error
	stats  Stats
	// wake holds at most one pending notification, so put never blocks
	// and a waiting take always sees the newest state.
	wake chan struct{}
}

func newMailbox() *mailbox {
	return &mailbox{wake: make(chan struct{}, 1)}
}

func (m *mailbox) notify() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// put offers a captured frame. It returns the frame it replaced, which
// no consumer has seen, so the caller may reuse its buffer.
func (m *mailbox) put(f *frame.Frame) (replaced *frame.Frame) {
	m.mu.Lock()
	replaced = m.latest
	if replaced != nil {
		m.stats.Dropped++
	}
	m.latest = f
	m.stats.Captured++
	m.mu.Unlock()
	m.notify()
	return replaced
}

// take blocks until a frame, the end of the source, or ctx's end.
func (m *mailbox) take(ctx context.Context) (*frame.Frame, error) {
	for {
		m.mu.Lock()
		if f := m.latest; f != nil {
			m.latest = nil
			m.mu.Unlock()
			return f, nil
		}
		if err := m.endErr; err != nil {
			m.mu.Unlock()
			// Wake any other waiting consumer too.
			m.notify()
			return nil, err
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.wake:
		}
	}
}

// end makes take return err once no frame is left; the first error wins.
func (m *mailbox) end(err error) {
	m.mu.Lock()
	if m.endErr == nil {
		m.endErr = err
	}
	m.mu.Unlock()
	m.notify()
}

// shut forgets an untaken frame and makes every take fail with
// ErrClosed, overriding an earlier end of stream.
func (m *mailbox) shut() {
	m.mu.Lock()
	m.latest = nil
	m.endErr = ErrClosed
	m.mu.Unlock()
	m.notify()
}

func (m *mailbox) corrupt() {
	m.mu.Lock()
	m.stats.Corrupt++
	m.mu.Unlock()
}

func (m *mailbox) restarted() {
	m.mu.Lock()
	m.stats.Restarts++
	m.mu.Unlock()
}

func (m *mailbox) failed(err error) {
	m.mu.Lock()
	m.stats.LastError = err.Error()
	m.stats.LastErrorTime = time.Now()
	m.mu.Unlock()
}

func (m *mailbox) setFormat(f frame.Format, w, h int) {
	m.mu.Lock()
	m.stats.Format, m.stats.Width, m.stats.Height = f, w, h
	m.mu.Unlock()
}

func (m *mailbox) snapshot() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// runner is what the three sources share: the mailbox, a context whose
// end tells the capture goroutine (and any subprocess) to stop, and the
// wait for that goroutine.
type runner struct {
	box       *mailbox
	ctx       context.Context
	stop      context.CancelFunc
	done      <-chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newRunner() runner {
	ctx, stop := context.WithCancel(context.Background())
	return runner{box: newMailbox(), ctx: ctx, stop: stop, done: ctx.Done()}
}

func (r *runner) start(run func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		run()
	}()
}

// superviseSessions runs session again and again until Close, with capped
// exponential backoff between runs. A session returns how many frames it
// delivered; only one that streamed for at least retryMax earns a fast
// retry, so a device that fails right after opening keeps backing off
// instead of spinning. A nil error from session ends the source when
// cleanEnd says so (a file played to its end).
func (r *runner) superviseSessions(cfg Config, log *slog.Logger, what string, session func() (int, error), cleanEnd func(frames int) bool) {
	retry := newBackoff(cfg.RetryMin, cfg.RetryMax)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			d := retry.delay()
			if !sleepOrDone(d, r.done) {
				return
			}
			r.box.restarted()
			log.Info("restarting "+what, "after", d)
		}
		started := time.Now()
		frames, err := session()
		if r.closing() {
			return
		}
		if err == nil {
			if cleanEnd(frames) {
				r.box.end(io.EOF)
				return
			}
			err = errors.New("stream ended")
		}
		// Stats.LastError goes to status: an error may quote the source.
		err = redactedError{err, RedactIn(err.Error(), cfg.Source)}
		r.box.failed(err)
		log.Warn(what+" stopped, will restart", "err", err, "frames", frames, "ran_for", time.Since(started).Round(time.Millisecond))
		if frames > 0 && time.Since(started) >= cfg.RetryMax {
			retry.reset()
		}
	}
}

func (r *runner) Next(ctx context.Context) (*frame.Frame, error) { return r.box.take(ctx) }

func (r *runner) Stats() Stats { return r.box.snapshot() }

func (r *runner) Close() error {
	r.closeOnce.Do(func() {
		r.stop()
		r.wg.Wait()
		r.box.shut()
	})
	return nil
}

func (r *runner) closing() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

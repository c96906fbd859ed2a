package systemd

import (
	"sync"
	"time"
)

// Watchdog pings the systemd watchdog (WATCHDOG=1) while Healthy says the
// daemon works. A stuck pipeline stops the pings, and systemd then kills and
// restarts clipd (WatchdogSec= with Restart=on-failure): a process that is
// alive but makes no progress is treated as failed.
//
// Usage: fill the fields, Initialize, Close on shutdown.
type Watchdog struct {
	// Interval is the watchdog timeout (WatchdogInterval); pings go out at
	// half of it, as sd_watchdog_enabled(3) recommends.
	Interval time.Duration
	// Healthy is called before each ping; nil means always healthy.
	Healthy func() bool
	// Socket is the notification socket; "" means $NOTIFY_SOCKET.
	Socket string
	// OnUnhealthy, if set, is called once each time Healthy turns false
	// (for logging).
	OnUnhealthy func()

	mu      sync.Mutex
	pings   int
	lastErr error

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Initialize starts the pinging goroutine. With a zero Interval (watchdog
// disabled) nothing is started and Close returns at once.
func (w *Watchdog) Initialize() error {
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	if w.Interval <= 0 {
		close(w.done)
		return nil
	}
	go w.run()
	return nil
}

// Close stops pinging and waits for the goroutine to end. Calling it again
// does nothing.
func (w *Watchdog) Close() {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.done
}

// Pings is the number of pings sent so far.
func (w *Watchdog) Pings() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pings
}

// Err is the error of the last failed ping, nil after a successful one.
func (w *Watchdog) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *Watchdog) run() {
	defer close(w.done)
	ticker := time.NewTicker(w.Interval / 2)
	defer ticker.Stop()
	wasHealthy := true
	w.tick(&wasHealthy)
	for {
		select {
		case <-w.stop:
			return
		case <-ticker.C:
			w.tick(&wasHealthy)
		}
	}
}

func (w *Watchdog) tick(wasHealthy *bool) {
	healthy := w.Healthy == nil || w.Healthy()
	if !healthy {
		if *wasHealthy && w.OnUnhealthy != nil {
			w.OnUnhealthy()
		}
		*wasHealthy = false
		return
	}
	*wasHealthy = true
	addr := w.Socket
	var sent bool
	var err error
	if addr == "" {
		sent, err = Notify("WATCHDOG=1")
	} else {
		sent, err = NotifySocket(addr, "WATCHDOG=1")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr = err
	if sent {
		w.pings++
	}
}

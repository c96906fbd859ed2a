package daemon

import (
	"sort"
	"sync"
	"time"
)

// limiter admits one report a minute: a camera sending garbage, or a
// broken model, would otherwise flood clients at frame rate.
type limiter struct {
	mu   sync.Mutex
	last time.Time
}

func (l *limiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Minute {
		return false
	}
	l.last = now
	return true
}

const latencyWindow = 512

// window keeps the last latencyWindow samples of one stage.
type window struct {
	samples [latencyWindow]float64
	n, next int
}

func (w *window) add(v float64) {
	w.samples[w.next] = v
	w.next = (w.next + 1) % latencyWindow
	w.n = min(w.n+1, latencyWindow)
}

func (w *window) quantile(q float64) float64 {
	if w.n == 0 {
		return 0
	}
	s := append([]float64(nil), w.samples[:w.n]...)
	sort.Float64s(s)
	return s[int(q*float64(w.n-1)+0.5)]
}

// rateMeter counts events over the last few seconds.
type rateMeter struct {
	times [64]time.Time
	n     int
	next  int
}

func (r *rateMeter) tick(t time.Time) {
	r.times[r.next] = t
	r.next = (r.next + 1) % len(r.times)
	r.n = min(r.n+1, len(r.times))
}

func (r *rateMeter) perSecond(now time.Time) float64 {
	const span = 5 * time.Second
	count := 0
	var oldest time.Time
	for i := 0; i < r.n; i++ {
		t := r.times[i]
		if now.Sub(t) <= span {
			count++
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	if count < 2 {
		return 0
	}
	return float64(count-1) / now.Sub(oldest).Seconds()
}

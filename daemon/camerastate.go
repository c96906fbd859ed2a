package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/server"
)

// health is what a camera knows about itself beyond counters: whether its
// source delivers (its state, published as a camera message on every
// change and logged) and how fast frames come.
type health struct {
	mu    sync.Mutex
	state string
	err   string
	// online is what the outputs were last told (MQTT's camera status),
	// always sourceUp(state) but for a successor's inherited value before
	// its first change of state.
	online    bool
	started   bool      // a first frame was seen: "camera started" is logged once
	lastFrame time.Time // capture time of the newest frame taken
	captured  counterRate
}

// stateCheckInterval is how often a camera compares its source's last
// failure with its last frame.
const stateCheckInterval = 250 * time.Millisecond

// sawFrame records a frame taken from src, captured at t.
func (c *camera) sawFrame(src capture.Source, t time.Time) {
	now := time.Now()
	c.health.mu.Lock()
	if t.After(c.health.lastFrame) {
		c.health.lastFrame = t
	}
	c.health.captured.sample(now, func() uint64 { return src.Stats().Captured })
	running := c.health.state == server.CameraRunning
	c.health.mu.Unlock()
	if !running {
		c.setState(server.CameraRunning, "")
	}
}

// watchSource turns the source's failures into the retrying state: a
// failure newer than the newest frame means the source is being reopened
// and nothing has come since. Frames set running again (sawFrame).
func (c *camera) watchSource(ctx context.Context, src capture.Source) {
	tick := time.NewTicker(stateCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := src.Stats()
		c.health.mu.Lock()
		failing := st.LastError != "" && st.LastErrorTime.After(c.health.lastFrame) &&
			(c.health.state != server.CameraRetrying || c.health.err != st.LastError)
		c.health.mu.Unlock()
		if failing {
			c.setState(server.CameraRetrying, st.LastError)
		}
	}
}

// sourceUp is the one rule for whether a camera in state is up: MQTT's
// camera status and the clipd_camera_up metric both follow it.
func sourceUp(state string) bool { return state == server.CameraRunning }

// setState moves the camera to state, logging and publishing the change;
// a new error while retrying is logged, but published only as a change of
// state, so that a flapping source does not flood clients.
func (c *camera) setState(state, errMsg string) {
	c.health.mu.Lock()
	prev, prevErr, started := c.health.state, c.health.err, c.health.started
	if prev == state && prevErr == errMsg {
		c.health.mu.Unlock()
		return
	}
	c.health.state, c.health.err = state, errMsg
	if state == server.CameraRunning {
		c.health.started = true
	}
	c.setOnlineLocked(sourceUp(state))
	c.health.mu.Unlock()

	switch state {
	case server.CameraRunning:
		if !started {
			c.log.Info("camera started", "source", capture.Redact(c.conf.Source), "labels", c.conf.Labels)
		} else {
			c.log.Info("camera running again", "source", capture.Redact(c.conf.Source))
		}
	case server.CameraRetrying:
		c.log.Warn("camera waiting for its source", "source", capture.Redact(c.conf.Source), "err", errMsg)
	case server.CameraEnded:
		c.log.Info("source ended", "source", capture.Redact(c.conf.Source))
	}
	if state != prev {
		c.publish(&server.CameraState{Camera: c.conf.Name, State: state, Error: errMsg})
	}
}

// inheritOnline starts c, taking over old's running source, from what the
// outputs were last told of old: the source does not stop delivering for
// a swap, and c's first change of state must still reach them.
func (c *camera) inheritOnline(old *camera) {
	old.health.mu.Lock()
	up := old.health.online
	old.health.mu.Unlock()
	c.health.mu.Lock()
	c.health.online = up
	c.health.mu.Unlock()
}

// setOffline tells the outputs the camera no longer delivers: it stopped,
// or was given up on.
func (c *camera) setOffline() {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	c.setOnlineLocked(false)
}

// setOnlineLocked tells the outputs of a change of online, under
// health.mu so that two changes racing (the frame loop and watchSource)
// reach them in the order they were made.
func (c *camera) setOnlineLocked(up bool) {
	if c.health.online != up {
		c.health.online = up
		c.outputs.cameraOnline(c.conf.Name, up)
	}
}

// stateNow is the camera's state for status.
func (c *camera) stateNow() string {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	if c.health.state == "" {
		return server.CameraStarting
	}
	return c.health.state
}

// captureFPS is the rate the source has captured frames at over the last
// few seconds.
func (c *camera) captureFPS(captured uint64) float64 {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	return c.health.captured.perSecond(time.Now(), captured)
}

// counterRate is the rate of a growing counter over the last rateSpan,
// from samples taken at most every sampleEvery.
type counterRate struct {
	samples [64]counterSample
	n, next int
}

type counterSample struct {
	at    time.Time
	count uint64
}

const (
	rateSpan    = 5 * time.Second
	sampleEvery = 100 * time.Millisecond
)

// sample records the counter at now, reading it only when a sample is due.
func (r *counterRate) sample(now time.Time, read func() uint64) {
	if r.n > 0 {
		last := r.samples[(r.next+len(r.samples)-1)%len(r.samples)]
		if now.Sub(last.at) < sampleEvery {
			return
		}
	}
	r.samples[r.next] = counterSample{now, read()}
	r.next = (r.next + 1) % len(r.samples)
	r.n = min(r.n+1, len(r.samples))
}

// perSecond is the counter's growth from its oldest sample within rateSpan
// to count, its value now; 0 without such a sample.
func (r *counterRate) perSecond(now time.Time, count uint64) float64 {
	var oldest *counterSample
	for i := 0; i < r.n; i++ {
		s := &r.samples[i]
		if now.Sub(s.at) <= rateSpan && (oldest == nil || s.at.Before(oldest.at)) {
			oldest = s
		}
	}
	if oldest == nil || count < oldest.count || now.Sub(oldest.at) < sampleEvery {
		return 0
	}
	return float64(count-oldest.count) / now.Sub(oldest.at).Seconds()
}

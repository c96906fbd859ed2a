package daemon

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/web"
)

// outputs take the events and results of every camera beyond the socket:
// snapshots on disk and MQTT. None of their methods blocks the
// classification path; each output queues (bounded) and works in its own
// goroutine.
type outputs struct {
	log       *slog.Logger
	publish   func(server.Event)
	snapshots *snapshot.Writer // nil when the directory could not be made
	mqtt      *mqtt.Publisher  // nil when [mqtt] broker is unset
	metrics   *metrics.Metrics

	mu sync.Mutex
	// recent are the last web.MaxEvents events, newest last: as many as
	// the page and /api/events may ask for.
	recent []state.Event
	counts map[targetName]uint64
}

// newOutputs starts the outputs conf enables; mo are the MQTT publisher's
// options but its log.
func newOutputs(conf *config.Config, mo mqtt.Options, log *slog.Logger, publish func(server.Event)) (*outputs, error) {
	o := &outputs{log: log, publish: publish, counts: map[targetName]uint64{}}
	if conf.MQTT.Broker != "" {
		mo.Log = log.With("output", "mqtt")
		p, err := mqtt.New(conf.MQTT, mo)
		if err != nil {
			return nil, err
		}
		o.mqtt = p
	}
	s := conf.Snapshots
	w, err := snapshot.New(snapshot.Config{Dir: s.Dir, MaxFiles: s.MaxFiles, MaxBytes: s.MaxBytes,
		Log: log.With("output", "snapshots"), OnWritten: o.snapshotWritten})
	if err != nil {
		// Snapshots are worth having, not worth refusing to classify.
		log.Warn("no snapshots: events go out without pictures", "dir", s.Dir, "err", err)
	} else {
		o.snapshots = w
	}
	return o, nil
}

func (o *outputs) snapshotWritten(camera, region, _ string, jpeg []byte) {
	if o.mqtt != nil {
		o.mqtt.PublishSnapshot(camera, region, jpeg)
	}
}

// event sends a state change everywhere, with a snapshot of the frame
// that decided it (the region outlined).
func (o *outputs) event(ev state.Event, f *frame.Frame, box *frame.Box) {
	if o.snapshots != nil && f != nil {
		path, err := o.snapshots.Save(ev.Camera, ev.Region, f, box)
		if err != nil {
			o.log.Warn("event without a snapshot", "camera", ev.Camera, "region", ev.Region, "err", err)
		}
		ev.Snapshot = path
	}
	o.mu.Lock()
	o.recent = append(o.recent, ev)
	if len(o.recent) > web.MaxEvents {
		o.recent = slices.Delete(o.recent, 0, len(o.recent)-web.MaxEvents)
	}
	o.counts[targetName{ev.Camera, ev.Region}]++
	o.mu.Unlock()
	o.metrics.StateChanged(ev)
	o.publish(&server.StateEvent{Event: ev})
	if o.mqtt != nil {
		o.mqtt.PublishEvent(ev)
	}
}

// classified tells MQTT a target was classified, whatever its score: a
// target that stays below its threshold is quiet, not gone.
func (o *outputs) classified(t targetName) {
	if o.mqtt != nil {
		o.mqtt.MarkClassified(t.camera, t.region)
	}
}

// result hands a published result to MQTT when it wants every result.
func (o *outputs) result(r *server.Result) {
	if o.mqtt == nil {
		return
	}
	var payload []byte
	if o.mqtt.PublishesResults() {
		payload, _ = json.Marshal(r)
	}
	// Called even without a payload: it keeps the Home Assistant sensor
	// from expiring while the pipeline runs.
	o.mqtt.PublishResult(r.Camera, r.Region, payload)
}

// cameraOnline tells MQTT whether a camera's source delivers.
func (o *outputs) cameraOnline(camera string, up bool) {
	if o.mqtt != nil {
		o.mqtt.SetCameraOnline(camera, up)
	}
}

// targets announces the cameras and targets, with their labels (Home
// Assistant's event types), after a start, a reload or a labels change.
func (o *outputs) targets(cameras []*camera) {
	if o.mqtt == nil {
		return
	}
	var names []string
	var ts []mqtt.Target
	for _, c := range cameras {
		names = append(names, c.conf.Name)
		for _, t := range c.targets {
			mt := mqtt.Target{Camera: c.conf.Name, Region: t.name.region}
			if set := t.labels.current(); set != nil {
				mt.Labels = set.Names()
			}
			ts = append(ts, mt)
		}
	}
	if err := o.mqtt.SetTargets(names, ts); err != nil {
		o.log.Warn("mqtt: targets not announced", "err", err)
	}
}

// latest returns up to n of the latest events, newest first.
func (o *outputs) latest(n int) []state.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]state.Event, 0, min(n, len(o.recent)))
	for i := len(o.recent) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, o.recent[i])
	}
	return out
}

func (o *outputs) close() {
	if o.snapshots != nil {
		o.snapshots.Close()
	}
	if o.mqtt != nil {
		o.mqtt.Close()
	}
}

// observe feeds one classified frame of a target, which lies at box in
// it, to its state tracker and sends the event when the state changed. A
// new label set (a reload) is given to the tracker first: removing the
// current label ends that state.
func (c *camera) observe(t *target, f *frame.Frame, box frame.Box, set *labels.Set, top engine.Match) (changed bool) {
	t.mu.Lock()
	t.box = box
	var evs []state.Event
	if set.Version != t.seenVersion || set.File != t.seenFile {
		if t.seenVersion != 0 {
			if ev, ok := t.tracker.SetLabels(set.Names(), set.Version, f.Time); ok {
				evs = append(evs, ev)
			}
		}
		t.seenVersion, t.seenFile = set.Version, set.File
	}
	if ev, ok := t.tracker.Observe(state.Observation{Time: f.Time, Label: top.Label, Score: top.Score,
		Threshold: float32(t.conf.Threshold), LabelsVersion: set.Version}); ok {
		evs = append(evs, ev)
	}
	t.mu.Unlock()
	for _, ev := range evs {
		c.outputs.event(ev, f, t.outline(box))
	}
	return len(evs) > 0
}

// outline is what a snapshot or thumbnail of the target outlines: its box,
// nil for the whole frame.
func (t *target) outline(box frame.Box) *frame.Box {
	if t.name.region == "" {
		return nil
	}
	return &box
}

// inheritStates carries the state trackers of the targets old (halted)
// shares with c (same name, same labels file, same state_hold) over a
// restart, so that a reload does not forget what each target shows. old
// lets go of them: c writes them under its own targets' mutexes, and a
// status of old read meanwhile must not.
func (c *camera) inheritStates(old *camera) {
	for _, t := range c.targets {
		for _, o := range old.targets {
			o.mu.Lock()
			if o.tracker != nil && o.name == t.name && o.conf.Labels == t.conf.Labels && o.tracker.Hold() == t.tracker.Hold() {
				t.tracker, t.seenVersion, t.seenFile = o.tracker, o.seenVersion, o.seenFile
				o.tracker = nil
			}
			o.mu.Unlock()
		}
	}
}

// status adds the outputs' counters to a status reply.
func (o *outputs) status(st *server.Status) {
	if o.snapshots != nil {
		ss := o.snapshots.Stats()
		st.Snapshots = &ss
	}
	if o.mqtt != nil {
		ms := o.mqtt.Status()
		st.MQTT = &ms
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.counts) > 0 {
		st.Events = make(map[string]uint64, len(o.counts))
		for t, n := range o.counts {
			st.Events[t.String()] = n
		}
	}
}

// Package state turns a target's stream of classified frames into a state
// and the events that change it. A target is the whole frame of a camera
// (Region "") or one named region of it.
//
// The rule (issue 13): the state is the label that has been on top with a
// score at or above the target's threshold in every classified frame for at
// least the hold time, and in at least two consecutive classified frames
// unless the hold is zero; a frame whose top score is below the threshold
// counts as the state None. A change of state is an Event. A label reload
// that removes the current label ends that state (an Event to None).
//
// A Tracker is pure logic: no goroutines, no clock of its own (times come
// from the observations), not safe for concurrent use; each camera's
// pipeline owns the trackers of its targets.
package state

import (
	"errors"
	"time"
)

// None is the state of a target whose top score is below its threshold.
// A label literally named "none" is indistinguishable from it.
const None = "none"

// DefaultHold is the default state_hold.
const DefaultHold = time.Second

// Observation is one classified frame of a target.
type Observation struct {
	// Time is the capture time of the frame.
	Time time.Time
	// Label and Score are the frame's top label and its score.
	Label string
	Score float32
	// Threshold is the target's threshold when the frame was classified.
	Threshold float32
	// LabelsVersion is the version of the label set the frame was scored with.
	LabelsVersion uint64
}

// Event is a change of a target's state. It is the body of the socket's
// "event" message (the server adds "type") and of the MQTT event payload.
type Event struct {
	Camera string `json:"camera"`
	Region string `json:"region,omitempty"`
	// Label is the new state; Previous the one it replaces ("" for the
	// first state a tracker establishes, which is unknown before).
	Label    string `json:"label"`
	Previous string `json:"previous"`
	// Score is Label's score in the deciding frame; 0 when Label is None.
	Score float32 `json:"score"`
	// Since is when the new state began: the first frame of the run that
	// established it (or the reload that forced None).
	Since time.Time `json:"since"`
	// Time is the deciding frame's capture time (or the reload's time).
	Time          time.Time `json:"time"`
	LabelsVersion uint64    `json:"labels_version"`
	// Snapshot is the path the event's JPEG will have, "" when none was
	// queued; set by the daemon after the tracker returns the event, when
	// the snapshot is only queued. The file may never exist (encoding or
	// writing failed, clipd was killed first) or be gone later (rotated
	// out): readers must expect a missing file.
	Snapshot string `json:"snapshot,omitempty"`
}

// Current is a target's state for status displays.
type Current struct {
	// Label is "" until the tracker has established a first state.
	Label         string    `json:"label"`
	Score         float32   `json:"score"`
	Since         time.Time `json:"since"`
	LabelsVersion uint64    `json:"labels_version"`
}

// Tracker keeps the state of one target.
type Tracker struct {
	camera, region string
	hold           time.Duration

	cur Current
	// run is the uninterrupted sequence of frames, ending with the latest,
	// that all counted as the same label.
	run struct {
		label  string
		first  time.Time
		frames int
	}
	last time.Time
	// labels is the current label set; nil until SetLabels is called, and
	// until then any label counts.
	labels map[string]struct{}
}

// NewTracker returns a tracker for a target with the given state_hold.
func NewTracker(camera, region string, hold time.Duration) (*Tracker, error) {
	if camera == "" {
		return nil, errors.New("state: camera name must not be empty")
	}
	if hold < 0 {
		return nil, errors.New("state: state_hold must not be negative")
	}
	return &Tracker{camera: camera, region: region, hold: hold}, nil
}

// Hold is the tracker's state_hold.
func (t *Tracker) Hold() time.Duration { return t.hold }

// Current returns the target's state.
func (t *Tracker) Current() Current { return t.cur }

// Observe feeds one classified frame and returns the event if the frame
// changed the state.
func (t *Tracker) Observe(o Observation) (Event, bool) {
	label := t.effective(o)
	switch {
	case t.run.frames == 0 || label != t.run.label:
		t.run.label, t.run.first, t.run.frames = label, o.Time, 1
	default:
		t.run.frames++
		// A clock that steps back would keep the run short of the hold
		// until it caught up again; measure from the step instead.
		if o.Time.Before(t.last) {
			t.run.first = o.Time
		}
	}
	t.last = o.Time

	if label == t.cur.Label || !t.held(o.Time) {
		return Event{}, false
	}
	var score float32
	if label != None {
		score = o.Score
	}
	ev := Event{
		Camera: t.camera, Region: t.region,
		Label: label, Previous: t.cur.Label, Score: score,
		Since: t.run.first, Time: o.Time, LabelsVersion: o.LabelsVersion,
	}
	t.cur = Current{Label: label, Score: score, Since: t.run.first, LabelsVersion: o.LabelsVersion}
	return ev, true
}

// SetLabels tells the tracker that the target's label set is now names, at
// version, from the time at. If the current state is a label the set no
// longer has, that state ends: the returned event changes it to None. From
// then on a frame whose top label is not in the set (one scored with the
// old set, still in flight) counts as None.
func (t *Tracker) SetLabels(names []string, version uint64, at time.Time) (Event, bool) {
	t.labels = make(map[string]struct{}, len(names))
	for _, n := range names {
		t.labels[n] = struct{}{}
	}
	// A run of a removed label is broken even if a later reload brings the
	// label back: the frames in between counted as None.
	if t.run.frames > 0 && t.run.label != None && !t.known(t.run.label) {
		t.run.frames = 0
	}
	if t.cur.Label == "" || t.cur.Label == None || t.known(t.cur.Label) {
		return Event{}, false
	}
	ev := Event{
		Camera: t.camera, Region: t.region,
		Label: None, Previous: t.cur.Label,
		Since: at, Time: at, LabelsVersion: version,
	}
	t.cur = Current{Label: None, Since: at, LabelsVersion: version}
	return ev, true
}

func (t *Tracker) effective(o Observation) string {
	// NaN scores fail the comparison and count as None.
	if o.Label == "" || !(o.Score >= o.Threshold) || !t.known(o.Label) {
		return None
	}
	return o.Label
}

func (t *Tracker) known(label string) bool {
	if t.labels == nil {
		return true
	}
	_, ok := t.labels[label]
	return ok
}

// held says whether the run decides the state. A run of one frame spans no
// time, so a positive hold implies the rule's "two consecutive frames".
func (t *Tracker) held(now time.Time) bool {
	return now.Sub(t.run.first) >= t.hold
}
